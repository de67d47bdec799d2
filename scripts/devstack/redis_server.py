"""A private Redis server."""

from __future__ import annotations

import socket
from pathlib import Path

from scripts.devstack.servers import LOCALHOST, EmbeddedServer, find_executable, stored_password

MAX_MEMORY = "256mb"


class RedisServer(EmbeddedServer):
    """redis-server with its files in `data_dir`.

    Clients must authenticate: the password is made once and kept in `data_dir/password`, given
    to the server in a config file of mode 0600 (not on its command line, which `ps` shows), and
    carried by `url`. `persistent=True` snapshots to `dump.rdb` (every minute after a write, and
    on stop) so data outlives a restart, for `portico up`; otherwise nothing is ever written to
    disk.
    """

    name = "redis"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        persistent: bool = False,
        start_timeout: float = 60.0,
        host: str = LOCALHOST,
    ) -> None:
        super().__init__(data_dir, port, start_timeout=start_timeout, host=host)
        self.persistent = persistent
        self._executable = find_executable("redis-server", "install the redis-server package")

    @property
    def password(self) -> str:
        return stored_password(self.data_dir / "password")

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def _config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def _prepare(self) -> None:
        self._config_path.touch(mode=0o600)
        self._config_path.chmod(0o600)
        self._config_path.write_text(f"requirepass {self.password}\n")

    def _command(self) -> list[str]:
        snapshots = ["--save", "60", "1"] if self.persistent else ["--save", ""]
        return [
            self._executable, str(self._config_path),
            *("--port", str(self.port), "--bind", self.host, "--dir", str(self.data_dir)),
            *("--daemonize", "no", "--appendonly", "no", *snapshots),
            # Bounded whatever clients do: past it, the keys with a TTL closest to expiry go
            # first (rate buckets, then cache entries); revocations, kept for a token lifetime,
            # last; the cache's generation keys have no TTL and are never evicted.
            *("--maxmemory", MAX_MEMORY, "--maxmemory-policy", "volatile-ttl"),
        ]

    def _accepts_connections(self) -> bool:
        # Raw AUTH and PING, so the "-LOADING" reply Redis gives while it reads a snapshot
        # means wait.
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    answer += chunk
                return answer.split(b"\r\n")[1:2] == [b"+PONG"]
        except OSError:
            return False
