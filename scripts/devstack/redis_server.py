"""A private Redis server."""

from __future__ import annotations

import socket
from pathlib import Path

from scripts.devstack.servers import LOCALHOST, EmbeddedServer, find_executable

MAX_MEMORY = "256mb"


class RedisServer(EmbeddedServer):
    """redis-server with its files in `data_dir`.

    `persistent=True` snapshots to `dump.rdb` (every minute after a write, and on stop) so data
    outlives a restart, for `portico up`; otherwise nothing is ever written to disk.
    """

    name = "redis"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        persistent: bool = False,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(data_dir, port, start_timeout=start_timeout)
        self.persistent = persistent
        self._executable = find_executable("redis-server", "install the redis-server package")

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    def _command(self) -> list[str]:
        snapshots = ["--save", "60", "1"] if self.persistent else ["--save", ""]
        return [
            self._executable,
            *("--port", str(self.port), "--bind", LOCALHOST, "--dir", str(self.data_dir)),
            *("--daemonize", "no", "--appendonly", "no", *snapshots),
            # Bounded whatever clients do: past it, keys with a TTL go first (cache entries,
            # buckets); the cache's generation keys have none and are never evicted.
            *("--maxmemory", MAX_MEMORY, "--maxmemory-policy", "volatile-lru"),
        ]

    def _accepts_connections(self) -> bool:
        # A raw PING, so the "-LOADING" reply Redis gives while it reads a snapshot means wait.
        try:
            with socket.create_connection((LOCALHOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
