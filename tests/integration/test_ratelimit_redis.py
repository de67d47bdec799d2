"""The rate limiter against a real Redis: the Lua token bucket's maths and atomicity, the
middleware's answers on a tiny app, and what happens while Redis is stopped."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.policies.batch import RedisBatcher
from gateway.policies.ratelimit import (
    RateLimitMiddleware,
    RatePolicy,
    RedisTokenBucket,
    bucket_key,
)

LOGGER = "portico.gateway.policies.ratelimit"


def _redis(url: str, timeout: float = 0.25) -> Redis:
    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = _redis(redis_url)
    yield client
    await client.aclose()


def _key() -> str:
    return bucket_key("test", f"ip:{uuid.uuid4().hex}")


class FakeClock:
    """The limiter's clock for its Redis retry interval, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the Lua bucket -----------------------------------------------------------------------


async def test_lua_bucket_gives_its_burst_then_refuses(redis_client: Redis) -> None:
    bucket, key = RedisTokenBucket(redis_client), _key()
    decisions = [await bucket.take(key, rate=20.0, burst=5) for _ in range(6)]
    assert all(d is not None and d.backend == "redis" for d in decisions)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]  # type: ignore[union-attr]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]  # type: ignore[union-attr]
    refused = decisions[-1]
    assert refused is not None
    assert 0 < refused.retry_after <= 1 / 20
    assert 0 < refused.reset <= 5 / 20
    assert refused.retry_after_seconds == 1
    # The state expires once the bucket would be full anyway.
    ttl_ms = await redis_client.pttl(key)
    assert 0 < ttl_ms <= 5 / 20 * 1000 + 1000 + 1
    assert set(await redis_client.hkeys(key)) == {b"tokens", b"ts"}


async def test_lua_bucket_refills_at_its_rate(redis_client: Redis) -> None:
    bucket, key = RedisTokenBucket(redis_client), _key()
    while (await bucket.take(key, rate=10.0, burst=5)).allowed:  # type: ignore[union-attr]
        pass
    started = time.monotonic()  # the empty bucket was seen after this
    await asyncio.sleep(0.3)
    admitted = 0
    while (await bucket.take(key, rate=10.0, burst=5)).allowed:  # type: ignore[union-attr]
        admitted += 1
    elapsed = time.monotonic() - started
    # 0.3 s at 10/s is 3 tokens (2 to spare float rounding); at most what the time since the
    # empty bucket was seen could add, plus the fraction of a token left then.
    assert 2 <= admitted <= min(5, 1 + 10 * elapsed)


async def test_lua_bucket_is_atomic_across_connections(redis_url: str) -> None:
    # Timeouts for a busy machine: 200 connections open at once here, and a timeout would
    # take the request off Redis.
    clients = [_redis(redis_url, timeout=5) for _ in range(20)]
    buckets = [RedisTokenBucket(client, call_timeout=5) for client in clients]
    key, rate, burst = _key(), 0.01, 50
    try:
        started = time.monotonic()
        decisions = await asyncio.gather(*(
            buckets[i % 20].take(key, rate=rate, burst=burst) for i in range(200)))
        elapsed = time.monotonic() - started
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    assert all(d is not None and d.backend == "redis" for d in decisions)
    admitted = [d for d in decisions if d.allowed]  # type: ignore[union-attr]
    assert burst <= len(admitted) <= burst + int(rate * elapsed)
    # Each admitted request saw its own token: no two read the same count.
    assert sorted(d.remaining for d in admitted) == list(range(burst))


# --- the middleware on a tiny app ---------------------------------------------------------


def _app(limiter: RedisTokenBucket | None, policy: RatePolicy, *, fail_open: bool = True,
         trusted: tuple[str, ...] = ()) -> RateLimitMiddleware:
    async def hello(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello), Route("/healthz", hello)])
    return RateLimitMiddleware(app, limiter=limiter, policies=[policy],
                               trusted_proxies=trusted, fail_open=fail_open)


def _policy(burst: int, rate: float = 0.01) -> RatePolicy:
    return RatePolicy(name=f"t{uuid.uuid4().hex[:12]}", rate=rate, burst=burst)


def _client(app, peer: str = "203.0.113.9") -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def _statuses(client: httpx.AsyncClient, n: int, **kwargs) -> list[int]:  # type: ignore[no-untyped-def]
    return [(await client.get("/hello", **kwargs)).status_code for _ in range(n)]


async def test_headers_on_every_response(redis_client: Redis) -> None:
    app = _app(RedisTokenBucket(redis_client), _policy(burst=2, rate=0.5))
    async with _client(app) as client:
        responses = [await client.get("/hello") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    for response, remaining in zip(responses, ("1", "0", "0"), strict=True):
        assert response.headers["ratelimit-limit"] == "2"
        assert response.headers["ratelimit-remaining"] == remaining
        assert 1 <= int(response.headers["ratelimit-reset"]) <= 4
    assert "retry-after" not in responses[0].headers
    refused = responses[2]
    assert refused.headers["retry-after"] == "2"  # one token at 0.5/s
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429


async def test_spoofed_forwarded_for_does_not_choose_the_bucket(redis_client: Redis) -> None:
    policy = _policy(burst=1)
    app = _app(RedisTokenBucket(redis_client), policy, trusted=("10.0.0.0/8",))
    key = bucket_key(policy.name, "ip:{}").format
    async with _client(app, peer="203.0.113.9") as outsider, \
            _client(app, peer="10.0.0.5") as proxy:
        assert await _statuses(outsider, 1, headers={"x-forwarded-for": "198.51.100.1"}) == [200]
        assert await _statuses(outsider, 1, headers={"x-forwarded-for": "198.51.100.2"}) == [429]
        assert await redis_client.exists(key("203.0.113.9")) == 1
        assert await redis_client.exists(key("198.51.100.1"), key("198.51.100.2")) == 0
        # Through a trusted proxy the forwarded address is the client.
        assert await _statuses(proxy, 2, headers={"x-forwarded-for": "198.51.100.1"}) == [
            200, 429]
        assert await redis_client.exists(key("198.51.100.1")) == 1
        assert await redis_client.exists(key("10.0.0.5")) == 0


async def test_replicas_share_buckets(redis_url: str) -> None:
    policy = _policy(burst=3)
    first, second = _redis(redis_url), _redis(redis_url)
    try:
        async with _client(_app(RedisTokenBucket(first), policy)) as one, \
                _client(_app(RedisTokenBucket(second), policy)) as two:
            assert await _statuses(one, 2) + await _statuses(two, 2) == [200, 200, 200, 429]
    finally:
        await first.aclose()
        await second.aclose()


# --- Redis stopped ------------------------------------------------------------------------


def _redis_errors() -> float:
    return REGISTRY.get_sample_value("portico_redis_errors_total", {"concern": "ratelimit"}) or 0


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_redis_down_fails_open_on_local_buckets_then_recovers(
        redis_server, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger=LOGGER)
    policy, clock = _policy(burst=3), FakeClock()
    client, other = _redis(redis_url), _redis(redis_url)
    limiter = RedisTokenBucket(client, retry_interval=0.5, clock=clock)
    try:
        async with _client(_app(limiter, policy)) as gateway, \
                _client(_app(RedisTokenBucket(other), policy)) as replica:
            assert await _statuses(gateway, 2) == [200, 200]
            errors_before = _redis_errors()
            await asyncio.to_thread(redis_server.stop)
            try:
                # This process's bucket starts full: the burst, then refusals; never a 5xx.
                assert await _statuses(gateway, 5) == [200, 200, 200, 429, 429]
                # Only the first request tried Redis; the rest waited for the retry interval.
                assert _redis_errors() - errors_before == 1
                clock.now += 0.5
                assert await _statuses(gateway, 2) == [429, 429]
                assert _redis_errors() - errors_before == 2
                assert len(_records(caplog, logging.WARNING)) == 1
                assert not limiter.available
            finally:
                await asyncio.to_thread(redis_server.start)
            clock.now += 0.5
            # Shared again (the restarted Redis is empty): this process spends the burst, and
            # the replica, whose own bucket is full, is refused.
            assert await _statuses(gateway, 4) == [200, 200, 200, 429]
            assert await _statuses(replica, 1) == [429]
            assert limiter.available
            assert len(_records(caplog, logging.INFO)) == 1
            assert len(_records(caplog, logging.WARNING)) == 1
    finally:
        await client.aclose()
        await other.aclose()


async def test_a_limiter_tries_redis_early_once_its_batcher_was_answered(
        redis_server, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    """Sharing a batcher with the response cache: when the cache's call finds Redis back, the
    limiter does not wait out its retry interval."""
    clock, client = FakeClock(), _redis(redis_url)
    batcher = RedisBatcher(client, timeout=0.25)
    limiter = RedisTokenBucket(client, retry_interval=0.5, clock=clock, batcher=batcher)
    try:
        assert await limiter.take(_key(), rate=1, burst=5) is not None
        await asyncio.to_thread(redis_server.stop)
        try:
            assert await limiter.take(_key(), rate=1, burst=5) is None
            assert not limiter.available
        finally:
            await asyncio.to_thread(redis_server.start)
        assert await limiter.take(_key(), rate=1, burst=5) is None  # still backing off
        await batcher.command("PING")  # the other user of the batcher is answered
        decision = await limiter.take(_key(), rate=1, burst=5)
        assert decision is not None and decision.backend == "redis" and limiter.available
    finally:
        await client.aclose()


async def test_unanswering_redis_costs_one_timeout_per_retry_interval() -> None:
    """A Redis that accepts connections and never answers (a hung server, a dropped route)."""
    connections: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # No socket timeout and redis-py's own retries: only the limiter's call timeout bounds it.
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    clock = FakeClock()
    limiter = RedisTokenBucket(client, retry_interval=0.5, call_timeout=0.2, clock=clock)
    try:
        async with _client(_app(limiter, _policy(burst=3))) as gateway:
            assert await _statuses(gateway, 1) == [200]
            tried = len(connections)
            assert tried >= 1 and not limiter.available
            # Until the retry interval has passed, requests do not go near Redis.
            assert await _statuses(gateway, 4) == [200, 200, 429, 429]
            assert len(connections) == tried
            clock.now += 0.5
            assert await _statuses(gateway, 1) == [429]
            assert len(connections) > tried
    finally:
        await client.aclose()
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_redis_down_fails_closed_when_told(redis_server, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    client = _redis(redis_url)
    limiter = RedisTokenBucket(client, retry_interval=0.5, clock=clock)
    app = _app(limiter, _policy(burst=3), fail_open=False)
    try:
        async with _client(app) as gateway:
            assert await _statuses(gateway, 1) == [200]
            await asyncio.to_thread(redis_server.stop)
            try:
                refused = [await gateway.get("/hello") for _ in range(2)]
                health = await gateway.get("/healthz")
            finally:
                await asyncio.to_thread(redis_server.start)
            for response in refused:
                assert response.status_code == 503
                assert response.headers["content-type"] == "application/problem+json"
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["code"] == "RATE_LIMIT_UNAVAILABLE"
            assert health.status_code == 200
            clock.now += 0.5
            assert await _statuses(gateway, 1) == [200]
    finally:
        await client.aclose()
