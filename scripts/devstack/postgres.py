"""A private PostgreSQL server, and databases made and dropped on a PostgreSQL server."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import errors, sql

from scripts.devstack.servers import (
    LOCALHOST,
    EmbeddedServer,
    EmbeddedServerError,
    stored_password,
)

# Password logins only (SCRAM), over TCP on the loopback only.
_HBA = """# Written by Portico's development stack.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


class PostgresServer(EmbeddedServer):
    """PostgreSQL from the machine's binaries; cluster in `data_dir/pgdata`, database `portico`.

    The superuser `portico` logs in with a password (scram-sha-256) over TCP on 127.0.0.1 only
    (or on `host`, from the networks `clients` names as well: the multi-host tests); the password
    is made once and kept in `data_dir/password`, and `url` carries it. No Unix
    socket is made, so a system cluster is never in the way. An existing cluster is reused (one
    made when logins needed no password is given the password and SCRAM on its next start). As
    root the server runs as the `postgres` account, since PostgreSQL refuses root.
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
        host: str = LOCALHOST,
        clients: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir, port, start_timeout=start_timeout, host=host)
        self.fast = fast
        self.clients = tuple(clients)
        self._bin_dir = _postgres_bin_dir()
        self._account = _postgres_account()

    @property
    def password(self) -> str:
        return stored_password(self.data_dir / "password")

    @property
    def url(self) -> str:
        return (f"postgresql+psycopg://{self.user}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{self.database}")

    @property
    def _hba_path(self) -> Path:
        return self.pgdata / "pg_hba.conf"

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
        # initdb reads the password from a file (never the command line), as the account it
        # runs as; the file goes once the cluster exists.
        password_file = self.data_dir / ".initdb-password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        if self._account is not None:
            os.chown(password_file, self._account.pw_uid, self._account.pw_gid)
        initdb = [str(self._bin_dir / "initdb"), "-D", str(self.pgdata), "-A", "scram-sha-256"]
        initdb += ["-U", self.user, f"--pwfile={password_file}", "--no-sync", "-E", "UTF8",
                   "--locale=C.UTF-8"]
        try:
            if self._run(initdb).wait() != 0:
                raise self._failure("initdb failed")
        finally:
            password_file.unlink(missing_ok=True)
        self._write_hba()

    def _hba(self) -> str:
        """pg_hba.conf: the loopback, and the client networks, by password."""
        return _HBA + "".join(f"host all all {network} scram-sha-256\n"
                              for network in self.clients)

    def _write_hba(self) -> None:
        self._hba_path.write_text(self._hba())
        if self._account is not None:
            os.chown(self._hba_path, self._account.pw_uid, self._account.pw_gid)

    def _trusts_anyone(self) -> bool:
        """A cluster made before passwords were required: its pg_hba.conf says trust."""
        lines = self._hba_path.read_text().splitlines()
        return any(line.split()[-1:] == ["trust"] for line in lines
                   if line.strip() and not line.lstrip().startswith("#"))

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
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
        if self._trusts_anyone():
            self._require_password()
        create_database(_with_database(self.url, "postgres"), self.database)

    def _require_password(self) -> None:
        """Gives an old trust cluster the password, then makes it ask for it."""
        with psycopg.connect(_libpq_url(self.url, "postgres"), autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(self.user), sql.Literal(self.password)))
            self._write_hba()
            conn.execute("SELECT pg_reload_conf()")


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
