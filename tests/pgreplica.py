"""A PostgreSQL primary and a streaming standby made from it with `pg_basebackup -R`, from the
machine's binaries (scripts/devstack/postgres.py), for failover tests: stop the primary, promote
the standby (`pg_promote()`), and a client whose URL names both hosts with
target_session_attrs=read-write finds the new primary.

Once the standby streams, the primary replicates synchronously (`synchronous_standby_names`),
as a deployment that must not lose an acknowledged commit in a failover does: asynchronous
replication may lose the last commits before the primary stopped.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from scripts.devstack.postgres import PostgresServer, _libpq_url
from scripts.devstack.servers import LOCALHOST


class PrimaryServer(PostgresServer):
    """A durable PostgreSQL that also admits replication connections of its superuser."""

    def __init__(self, data_dir: Path | str, **options: Any) -> None:
        super().__init__(data_dir, fast=False, **options)

    def _hba(self) -> str:
        # Replication from the loopback, and from the client networks (a standby on another
        # host, in the multi-host tests).
        return super()._hba() + "".join(f"host replication all {network} scram-sha-256\n"
                                        for network in ("127.0.0.1/32", *self.clients))

    def replicate_synchronously(self, timeout: float = 30.0) -> None:
        """Once a standby streams: every commit waits for the standby to have it."""
        deadline = time.monotonic() + timeout
        with psycopg.connect(_libpq_url(self.url), autocommit=True) as conn:
            while not conn.execute("SELECT count(*) FROM pg_stat_replication "
                                   "WHERE state = 'streaming'").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError("the standby does not stream")
                time.sleep(0.1)
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")


class StandbyServer(PostgresServer):
    """A hot standby of `primary`, copied with pg_basebackup -R on first start."""

    def __init__(self, data_dir: Path | str, primary: PostgresServer, **options: Any) -> None:
        super().__init__(data_dir, fast=False, **options)
        self.primary = primary

    def _prepare(self) -> None:
        if not (self.pgdata / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # The same superuser and password as the primary's: the copy has its roles.
            shutil.copy(self.primary.data_dir / "password", self.data_dir / "password")
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            if self._account is not None:
                for path in (self.data_dir, self.pgdata):
                    os.chown(path, self._account.pw_uid, self._account.pw_gid)
            source = (f"host={self.primary.host} port={self.primary.port} user={self.user} "
                      f"password={self.password}")
            backup = [str(self._bin_dir / "pg_basebackup"), "-D", str(self.pgdata), "-R",
                      "-X", "stream", "-c", "fast", "-d", source]
            if self._run(backup).wait() != 0:
                raise self._failure("pg_basebackup failed")
        super()._prepare()

    def promote(self) -> None:
        """Makes this standby a primary, waiting until it takes writes."""
        with psycopg.connect(_libpq_url(self.url), autocommit=True) as conn:
            conn.execute("SELECT pg_promote(wait => true, wait_seconds => 30)")


def failover_url(server: PostgresServer, ports: Sequence[int | str],
                 database: str = "portico") -> str:
    """A URL with `server`'s credentials naming the servers on `ports` (tried in that order;
    a port on 127.0.0.1, or a "host:port"), which connects only to the one that takes
    writes."""
    hosts = ",".join(port if isinstance(port, str) else f"{LOCALHOST}:{port}"
                     for port in ports)
    return (f"postgresql://{server.user}:{quote(server.password, safe='')}@{hosts}/{database}"
            "?target_session_attrs=read-write")
