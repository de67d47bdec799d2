"""A private SecantusDB server (MongoDB wire protocol). SecantusDB is GPL-2.0: it is only ever
run here as a separate process, never imported."""

from __future__ import annotations

import socket
from pathlib import Path

from scripts.devstack.servers import LOCALHOST, EmbeddedServer, find_executable


class SecantusServer(EmbeddedServer):
    """SecantusDB, a MongoDB-wire-compatible server, storing its data in `data_dir`.

    It answers pymongo exactly as a single-node replica set (`secantus`) would.
    """

    name = "secantus"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        cache_size: str = "256M",
        start_timeout: float = 60.0,
        host: str = LOCALHOST,
    ) -> None:
        super().__init__(data_dir, port, start_timeout=start_timeout, host=host)
        self.cache_size = cache_size
        self._executable = find_executable("secantusd-py", "install the project's dev extra")

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def _config_path(self) -> Path:
        return self.data_dir / "secantusd.toml"

    def _prepare(self) -> None:
        # Naming a config file turns off secantusd's search of ~/.secantus and /etc/secantus,
        # whose settings (--auth, say) would make this server differ from machine to machine.
        if not self._config_path.exists():
            self._config_path.write_text("# Empty: every setting comes from the command line.\n")

    def _command(self) -> list[str]:
        return [
            self._executable,
            *("--config", str(self._config_path), "--host", self.host, "--port", str(self.port)),
            *("--storage-path", str(self.data_dir), "--cache-size", self.cache_size),
        ]

    def _accepts_connections(self) -> bool:
        # pymongo is used here only, for the one check that needs a MongoDB client: a ping.
        import pymongo

        try:
            socket.create_connection((self.host, self.port), timeout=1).close()
            options = {"directConnection": True, "serverSelectionTimeoutMS": 1000}
            with pymongo.MongoClient(self.url, **options) as client:
                client.admin.command("ping")
            return True
        except (OSError, pymongo.errors.PyMongoError):
            return False
