"""The batcher's own Redis connection (gateway/policies/resp.py) against a real Redis: what it
opens (and when it leaves the connection to redis-py), sign-in and database as redis-py would,
error replies as redis-py's exceptions in their place, and a connection Redis closes."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as redis
from redis.exceptions import (
    AskError,
    AuthenticationError,
    MovedError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.policies.batch import RedisBatcher
from gateway.policies.resp import (
    PooledConnection,
    RespConnection,
    open_connection,
    own_connection_serves,
    pack,
    reply_error,
)


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def test_error_replies_are_redis_pys_exceptions() -> None:
    assert isinstance(reply_error("NOSCRIPT No matching script"), NoScriptError)
    moved = reply_error("MOVED 3999 127.0.0.1:6381")
    assert isinstance(moved, MovedError) and (moved.slot_id, moved.port) == (3999, 6381)
    assert isinstance(reply_error("ASK 1 127.0.0.1:6382"), AskError)
    other = reply_error("WRONGTYPE Operation against a key holding the wrong kind of value")
    assert type(other) is ResponseError and str(other).startswith("WRONGTYPE")


@pytest.mark.parametrize(("url", "ours"), [
    ("redis://:secret@127.0.0.1:6379/2", True), ("redis://127.0.0.1:6379", True),
    ("rediss://127.0.0.1:6379", False), ("unix:///run/redis.sock", False)])
def test_plain_tcp_gets_the_own_connection_anything_else_redis_pys(url, ours) -> None:
    assert own_connection_serves(redis.Redis.from_url(url).connection_pool) is ours


async def test_it_signs_in_and_uses_the_clients_database(redis_url) -> None:
    url = with_db(redis_url, 3)
    client = redis.Redis.from_url(url)
    batcher = RedisBatcher(client, timeout=2)
    try:
        assert await batcher.command("SET", "resp:db", "three") == b"OK"
        assert await client.get("resp:db") == b"three"
        assert await redis.Redis.from_url(with_db(redis_url, 0)).get("resp:db") is None
        assert isinstance(batcher._connection, RespConnection)
    finally:
        await batcher.close()
        await client.delete("resp:db")
        await client.aclose()


async def test_a_wrong_password_is_an_authentication_error(redis_url) -> None:
    parts = urlsplit(redis_url)
    wrong = urlunsplit(parts._replace(netloc=f":wrong@{parts.hostname}:{parts.port}"))
    with pytest.raises(AuthenticationError):
        await RespConnection.open(redis.Redis.from_url(wrong).connection_pool.connection_kwargs)


async def test_error_replies_come_in_their_place_and_the_stream_goes_on(redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    connection = await open_connection(client)
    try:
        connection.send(pack(("SET", "resp:k", "v")) + pack(("EVALSHA", "0" * 40, 0))
                        + pack(("INCR", "resp:k")) + pack(("GET", "resp:k")))
        ok, noscript, wrongtype, value = await connection.replies(4)
        assert (ok, value) == (b"OK", b"v")
        assert isinstance(noscript, NoScriptError) and isinstance(wrongtype, ResponseError)
    finally:
        await connection.close()
        await client.delete("resp:k")
        await client.aclose()


async def test_a_connection_redis_closes_fails_its_batch_and_the_next_reconnects(
        redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    batcher = RedisBatcher(client, timeout=2)
    try:
        await batcher.command("CLIENT", "SETNAME", "resp-test")
        await client.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")
        with pytest.raises(RedisConnectionError):
            await batcher.command("PING")
        assert await batcher.command("PING") == b"PONG"
    finally:
        await batcher.close()
        await client.aclose()


async def test_the_pooled_connection_answers_alike(redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    connection = PooledConnection(await client.connection_pool.get_connection())
    try:
        connection.send(pack(("EVALSHA", "0" * 40, 0)) + pack(("PING",)))
        noscript, pong = await asyncio.wait_for(connection.replies(2), 2)
        assert isinstance(noscript, NoScriptError) and pong == b"PONG"
    finally:
        await connection.close()
        await client.aclose()
