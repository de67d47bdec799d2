"""Databases for the whole session: those PORTICO_* variables name, else private servers.

A private server runs on a free port with its data in a temporary directory, in test mode
(no fsync, no snapshots), and is stopped when the session ends.
"""

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymongo
import pytest

from scripts.devstack.postgres import PostgresServer, create_database, drop_database
from scripts.devstack.redis_server import RedisServer
from scripts.devstack.secantus import SecantusServer
from tests.trust import session_state_dir


def _external(variable: str) -> str | None:
    return os.environ.get(variable) or None


def _skip_if_external(variable: str) -> None:
    if _external(variable):
        pytest.skip(f"{variable} names a server this test may not stop or restart")


@contextmanager
def _postgres_data_dir() -> Iterator[Path]:
    """A directory of its own for a PostgreSQL cluster, removed afterwards.

    Not under pytest's temporary root: as root, PostgreSQL runs as `postgres`, which must walk
    down to its data, and every pytest session, a concurrent one too, makes that root private
    to us (0700) again as it starts.
    """
    path = Path(tempfile.mkdtemp(prefix="portico-postgres-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _unique_name(request: pytest.FixtureRequest) -> str:
    """A database name fit for PostgreSQL and MongoDB: lower-case, short, one per module."""
    module = re.sub(r"[^a-z0-9]+", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    return f"t_{module[:40]}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL; skips when PORTICO_DATABASE_URL is set."""
    _skip_if_external("PORTICO_DATABASE_URL")
    with _postgres_data_dir() as data_dir, PostgresServer(data_dir, fast=True) as server:
        yield server


@pytest.fixture
def pg_data_dir() -> Iterator[Path]:
    """An empty directory a test's own PostgresServer can keep its data in."""
    with _postgres_data_dir() as data_dir:
        yield data_dir


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's private Redis; skips when PORTICO_REDIS_URL is set.

    A test that stops it must start it again (`restart()`, or `start()` in a `finally`).
    """
    _skip_if_external("PORTICO_REDIS_URL")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def secantus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer]:
    """The session's private SecantusDB; skips when PORTICO_MONGODB_URI is set."""
    _skip_if_external("PORTICO_MONGODB_URI")
    with SecantusServer(tmp_path_factory.mktemp("secantus")) as server:
        yield server


@pytest.fixture(scope="session")
def state_dir() -> Path:
    """The session's state directory: one development CA (pki/) and JWT key pair (keys/) for
    every service the tests start in this process, and for the certificates and tokens the
    tests call them with (tests/trust.py)."""
    return session_state_dir()


@pytest.fixture(scope="session")
def pg_url(request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL of the session's PostgreSQL database."""
    external = _external("PORTICO_DATABASE_URL")
    return external or request.getfixturevalue("postgres_server").url


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """URL of the session's Redis."""
    return _external("PORTICO_REDIS_URL") or request.getfixturevalue("redis_server").url


@pytest.fixture(scope="session")
def mongo_uri(request: pytest.FixtureRequest) -> str:
    """MongoDB URI of the session's SecantusDB (or real MongoDB)."""
    return _external("PORTICO_MONGODB_URI") or request.getfixturevalue("secantus_server").url


@pytest.fixture(scope="module")
def pg_database(pg_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL of an empty database of this test module's own, dropped after it."""
    name = _unique_name(request)
    yield create_database(pg_url, name)
    drop_database(pg_url, name)


@pytest.fixture(scope="module")
def mongo_database_name(mongo_uri: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A MongoDB database name of this test module's own; the database is dropped after it."""
    name = _unique_name(request)
    yield name
    with pymongo.MongoClient(mongo_uri) as client:
        client.drop_database(name)
