"""Private local database servers run as child processes, for the tests and `portico up`.

Each server keeps its data and its log (`<name>.log`) under the one directory it is given,
listens only on 127.0.0.1, and runs in a session of its own so that Ctrl-C reaches it only
through its owner's `stop()`. SecantusDB is GPL-2.0: it is only ever run here as a separate
process, never imported.
"""

from __future__ import annotations

import abc
import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import psycopg
from psycopg import errors, sql

LOCALHOST = "127.0.0.1"
_LOG_TAIL_LINES = 25


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


class EmbeddedServerError(RuntimeError):
    """A private server could not be prepared or started; the message ends with its log."""


class EmbeddedServer(abc.ABC):
    """A database server run as a child process, its data and log under `data_dir`.

    The port is fixed when the object is made (a free one unless given) so that `url` is known
    before `start()` and stays the same across `restart()`. Use it as a context manager, or call
    `start()` and `stop()`; servers still running when the interpreter exits are stopped then.
    """

    name = "server"
    # What asks the server to shut down cleanly; SIGKILL follows only after the stop timeout.
    stop_signal = signal.SIGTERM

    def __init__(
        self, data_dir: Path | str, port: int | None = None, *, start_timeout: float = 60.0
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port if port is not None else find_free_port()
        self.start_timeout = start_timeout
        # A port we picked may be taken before the server binds it; then we may pick another,
        # but only until the first successful start has made the URL public.
        self._port_fixed = port is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The URL clients connect with."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server unless it runs, and wait until it accepts connections."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._prepare()
        try:
            self._launch()
            self._on_ready()
        except BaseException:
            self.stop()  # a half-started server, even one interrupted by Ctrl-C, must not linger
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to shut down, kill it after `timeout` seconds; no-op when stopped."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
        self._reap()

    def restart(self) -> Self:
        """Stop, then start again on the same port with the same data."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.data_dir)!r}, port={self.port})"

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    @abc.abstractmethod
    def _accepts_connections(self) -> bool:
        """Whether a client can talk to the server now."""

    def _prepare(self) -> None:
        """Make the data directory ready before the first launch."""

    def _on_ready(self) -> None:
        """Finish setting up once the server accepts connections."""

    def _spawn_options(self) -> dict[str, Any]:
        """Extra `subprocess` options for every program run for this server."""
        return {}

    def _run(self, command: list[str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                **self._spawn_options(),
            )

    def _launch(self) -> None:
        attempts = 1 if self._port_fixed else 3
        for attempt in range(1, attempts + 1):
            self._process = self._run(self._command())
            _running.add(self)
            if self._wait_until_ready():
                self._port_fixed = True
                return
            self._reap()
            if attempt == attempts:
                raise self._failure("exited during start-up")
            self.port = find_free_port()

    def _wait_until_ready(self) -> bool:
        """True once the server answers, False if it exited first; raises on timeout."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            # Checked again after the probe: ours may have died on a taken port while another
            # server listening there answered in its place.
            if self._accepts_connections() and self._process.poll() is None:
                return True
            time.sleep(0.1)
        _kill_group(self._process.pid)
        self._reap()
        raise self._failure(f"did not accept connections within {self.start_timeout:g}s")

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            # Helpers the server forked (a Redis snapshot, a backend) must not outlive it.
            _kill_group(self._process.pid)
        self._process = None
        _running.discard(self)

    def _failure(self, reason: str) -> EmbeddedServerError:
        tail = _read_tail(self.log_path, self._log_offset)
        return EmbeddedServerError(
            f"{self.name} on {LOCALHOST}:{self.port} {reason}; last lines of {self.log_path}:\n"
            f"{tail}"
        )


class PostgresServer(EmbeddedServer):
    """PostgreSQL from the machine's binaries; cluster in `data_dir/pgdata`, database `portico`.

    The superuser `portico` logs in without a password (trust) over TCP on 127.0.0.1 only; no
    Unix socket is made, so a system cluster is never in the way. An existing cluster is
    reused. As root the server runs as the `postgres` account, since PostgreSQL refuses root.
    `fast=True` turns durability off (fsync, synchronous commit): for throwaway test data.
    """

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown, what `pg_ctl stop -m fast` sends: open sessions
    # are rolled back and closed instead of being waited for.
    stop_signal = signal.SIGINT
    user = "portico"
    database = "portico"

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        fast: bool = False,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(data_dir, port, start_timeout=start_timeout)
        self.fast = fast
        self._bin_dir = _postgres_bin_dir()
        self._account = _postgres_account()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@{LOCALHOST}:{self.port}/{self.database}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def _prepare(self) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self._account is not None:
            _check_reachable(self.data_dir, self._account)
            for path in (self.data_dir, self.pgdata):
                os.chown(path, self._account.pw_uid, self._account.pw_gid)
        if (self.pgdata / "PG_VERSION").exists():
            return
        initdb = [str(self._bin_dir / "initdb"), "-D", str(self.pgdata), "-A", "trust"]
        initdb += ["-U", self.user, "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]
        if self._run(initdb).wait() != 0:
            raise self._failure("initdb failed")

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": LOCALHOST,
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "200",
        }
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return [str(self._bin_dir / "postgres"), "-D", str(self.pgdata), *options]

    def _spawn_options(self) -> dict[str, Any]:
        account = self._account
        if account is None:
            return {}
        groups = os.getgrouplist(account.pw_name, account.pw_gid)
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": groups}

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(_libpq_url(self.url, "postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _on_ready(self) -> None:
        create_database(_with_database(self.url, "postgres"), self.database)


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
        self._executable = _executable("redis-server", "install the redis-server package")

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    def _command(self) -> list[str]:
        snapshots = ["--save", "60", "1"] if self.persistent else ["--save", ""]
        return [
            self._executable,
            *("--port", str(self.port), "--bind", LOCALHOST, "--dir", str(self.data_dir)),
            *("--daemonize", "no", "--appendonly", "no", *snapshots),
        ]

    def _accepts_connections(self) -> bool:
        # A raw PING, so the "-LOADING" reply Redis gives while it reads a snapshot means wait.
        try:
            with socket.create_connection((LOCALHOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


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
    ) -> None:
        super().__init__(data_dir, port, start_timeout=start_timeout)
        self.cache_size = cache_size
        self._executable = _executable("secantusd-py", "install the project's dev extra")

    @property
    def url(self) -> str:
        return f"mongodb://{LOCALHOST}:{self.port}/"

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
            *("--config", str(self._config_path), "--host", LOCALHOST, "--port", str(self.port)),
            *("--storage-path", str(self.data_dir), "--cache-size", self.cache_size),
        ]

    def _accepts_connections(self) -> bool:
        # pymongo is used here only, for the one check that needs a MongoDB client: a ping.
        import pymongo

        try:
            socket.create_connection((LOCALHOST, self.port), timeout=1).close()
            options = {"directConnection": True, "serverSelectionTimeoutMS": 1000}
            with pymongo.MongoClient(self.url, **options) as client:
                client.admin.command("ping")
            return True
        except (OSError, pymongo.errors.PyMongoError):
            return False


def create_database(url: str, name: str) -> str:
    """Create database `name` unless it exists on the PostgreSQL server at `url`; its URL."""
    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except errors.DuplicateDatabase:
                pass  # made meanwhile by another process: just as good
    return _with_database(url, name)


def drop_database(url: str, name: str) -> None:
    """Drop database `name` from the PostgreSQL server at `url`, closing its sessions."""
    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(name)))


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _libpq_url(url: str, database: str | None = None) -> str:
    """`url` as libpq takes it: without SQLAlchemy's `+driver`, maybe on another database."""
    if database is not None:
        url = _with_database(url, database)
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def _postgres_bin_dir() -> Path:
    on_path = shutil.which("initdb")
    if on_path is not None:
        # Resolved: PATH may hold a symlink, and postgres sits beside the real initdb.
        return Path(on_path).resolve().parent
    found = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    newest = max(found, key=lambda initdb: _version(initdb.parts[-3]), default=None)
    if newest is None:
        raise EmbeddedServerError(
            "PostgreSQL not found: no initdb on PATH nor in /usr/lib/postgresql/*/bin; "
            "install the postgresql package"
        )
    return newest.parent


def _version(text: str) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", text)]


def _postgres_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as when we are root, None when we are not."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise EmbeddedServerError(
            "PostgreSQL refuses to run as root and there is no 'postgres' account to run it as; "
            "install the postgresql package, or run `useradd --system postgres`"
        ) from None


def _check_reachable(path: Path, account: pwd.struct_passwd) -> None:
    """Fail early and clearly when `account` cannot walk down to `path`."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for parent in path.parents:
        info = parent.stat()
        if info.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            raise EmbeddedServerError(
                f"PostgreSQL runs as '{account.pw_name}', who cannot reach {path}: "
                f"{parent} is not searchable by it (`chmod o+x {parent}`, or choose another place)"
            )


def _executable(name: str, hint: str) -> str:
    # The venv's own bin first: console scripts live there even when the venv is not activated.
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise EmbeddedServerError(f"{name} not found on PATH; {hint}")
    return found


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_tail(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:]) or "(log empty)"


_running: set[EmbeddedServer] = set()


@atexit.register
def _stop_running() -> None:
    # The children run in sessions of their own, so nothing else would stop them with us.
    for server in list(_running):
        server.stop()
