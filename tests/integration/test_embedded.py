"""Private database servers: they start on free ports, keep their data, leave nothing behind."""

import os
import re
import socket
from pathlib import Path

import psycopg
import pymongo
import pytest
import redis

from scripts.devstack.postgres import PostgresServer
from scripts.devstack.redis_server import RedisServer
from scripts.devstack.secantus import SecantusServer
from scripts.devstack.servers import EmbeddedServer, EmbeddedServerError


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _assert_gone(pid: int) -> None:
    """Neither the server nor anything it forked (its process group) is left."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def _stop(server: EmbeddedServer) -> None:
    pid = server.pid
    assert pid is not None
    server.stop()
    assert not server.running
    _assert_gone(pid)


def test_postgres_makes_portico_database_and_keeps_data(pg_data_dir: Path) -> None:
    server = PostgresServer(pg_data_dir).start()
    try:
        password = (pg_data_dir / "password").read_text().strip()
        assert len(password) >= 32 and (pg_data_dir / "password").stat().st_mode & 0o077 == 0
        assert server.url == \
            f"postgresql+psycopg://portico:{password}@127.0.0.1:{server.port}/portico"
        with psycopg.connect(_libpq(server.url)) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
    finally:
        _stop(server)

    # A new server object on another free port: the data lives in the directory.
    with PostgresServer(pg_data_dir) as again, psycopg.connect(_libpq(again.url)) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]


def test_postgres_asks_for_the_password(pg_data_dir: Path) -> None:
    with PostgresServer(pg_data_dir, fast=True) as server:
        for wrong in (f"postgresql://portico@127.0.0.1:{server.port}/portico",
                      f"postgresql://portico:guess@127.0.0.1:{server.port}/portico"):
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(wrong, connect_timeout=5).close()
        hba = (server.pgdata / "pg_hba.conf").read_text()
        assert "scram-sha-256" in hba and "trust" not in hba


def test_a_cluster_made_without_passwords_gets_one(pg_data_dir: Path) -> None:
    """A .portico/ from before passwords (trust in pg_hba.conf) asks for one from its next
    start, and keeps its data."""
    server = PostgresServer(pg_data_dir).start()
    try:
        with psycopg.connect(_libpq(server.url)) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
    finally:
        _stop(server)
    hba = server.pgdata / "pg_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 trust\n")
    (pg_data_dir / "password").unlink()   # and no password was ever made
    with PostgresServer(pg_data_dir) as again:
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://portico@127.0.0.1:{again.port}/portico",
                            connect_timeout=5).close()
        with psycopg.connect(_libpq(again.url)) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]
        assert "trust" not in hba.read_text()


def test_redis_asks_for_the_password(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        assert server.url == f"redis://:{server.password}@127.0.0.1:{server.port}/0"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="guess").ping()
        assert redis.Redis.from_url(server.url).ping()
        assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
        assert server.password not in " ".join(_command_line(server.pid))


def _command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
def test_postgres_as_root_names_the_directory_postgres_cannot_reach(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    with pytest.raises(EmbeddedServerError, match=re.escape(f"{tmp_path} is not searchable")):
        PostgresServer(tmp_path / "pg").start()


def test_postgres_fast_mode_turns_durability_off(pg_data_dir: Path) -> None:
    with PostgresServer(pg_data_dir, fast=True) as server:
        with psycopg.connect(_libpq(server.url)) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW max_connections").fetchone() == ("200",)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)


def test_persistent_redis_keeps_data_across_restart(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        redis.Redis.from_url(server.url).set("kept", "still here")
        first_pid = server.pid
        server.restart()
        assert server.pid != first_pid
        assert redis.Redis.from_url(server.url).get("kept") == b"still here"
    finally:
        _stop(server)


def test_test_mode_redis_writes_nothing_to_disk(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        redis.Redis.from_url(server.url).set("forgotten", "1")
        server.restart()
        assert redis.Redis.from_url(server.url).get("forgotten") is None
    finally:
        _stop(server)
    assert not (tmp_path / "redis" / "dump.rdb").exists()


def test_redis_memory_is_bounded_and_evicts_keys_nearest_expiry_first(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        try:
            config = client.config_get("maxmemory*")
        finally:
            client.close()
    assert int(config["maxmemory"]) == 256 * 1024 * 1024
    assert config["maxmemory-policy"] == "volatile-ttl"


def test_secantus_answers_pymongo_and_keeps_data_across_restart(tmp_path: Path) -> None:
    server = SecantusServer(tmp_path / "secantus").start()
    try:
        with pymongo.MongoClient(server.url) as client:
            client.shop.items.insert_one({"_id": "kept", "note": "still here"})
        server.restart()
        with pymongo.MongoClient(server.url) as client:
            kept = client.shop.items.find_one({"_id": "kept"})
        assert kept == {"_id": "kept", "note": "still here"}
    finally:
        _stop(server)


def test_start_twice_keeps_the_running_server(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        pid = server.pid
        assert server.start().pid == pid


def test_servers_get_distinct_free_ports(tmp_path: Path) -> None:
    servers = [RedisServer(tmp_path / f"redis{i}") for i in range(3)]
    try:
        for server in servers:
            server.start()
        assert len({server.port for server in servers}) == 3
        assert all(redis.Redis.from_url(server.url).ping() for server in servers)
    finally:
        for server in servers:
            _stop(server)


def test_stop_kills_a_server_that_outstays_the_timeout(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    pid = server.pid
    assert pid is not None
    server.stop(timeout=0)
    _assert_gone(pid)


def test_start_on_a_taken_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RedisServer(tmp_path / "redis", taken.getsockname()[1], start_timeout=10)
        with pytest.raises(EmbeddedServerError, match="(?s)exited during start-up.*in use"):
            server.start()
    assert not server.running


def test_session_fixtures_give_working_servers(
    pg_url: str, redis_url: str, mongo_uri: str
) -> None:
    with psycopg.connect(_libpq(pg_url)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert redis.Redis.from_url(redis_url).ping()
    with pymongo.MongoClient(mongo_uri) as client:
        assert client.admin.command("ping")["ok"] == 1


def test_pg_database_is_an_empty_database_of_its_own(pg_url: str, pg_database: str) -> None:
    assert pg_database != pg_url
    with psycopg.connect(_libpq(pg_database)) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)


def test_mongo_database_name_is_unused(mongo_uri: str, mongo_database_name: str) -> None:
    with pymongo.MongoClient(mongo_uri) as client:
        assert mongo_database_name not in client.list_database_names()


def test_redis_server_fixture_restarts_on_the_same_url(redis_server: RedisServer) -> None:
    url = redis_server.url
    redis_server.restart()
    assert redis_server.url == url
    assert redis.Redis.from_url(url).ping()
