"""The rate limiter against a real Redis: the Lua token bucket's maths and atomicity, buckets
shared by replicas and chosen by trusted addresses only, and what happens while Redis is
stopped or hangs (one owner of Redis health: the link)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from gateway.policies.buckets import Decision, LocalTokenBucket
from gateway.policies.ratelimit import RateLimiter, RatePolicy, bucket_key
from gateway.policies.redis import RedisLink, redis_client

LOGGER = "portico.gateway.redis"


class FakeClock:
    """The link's clock for its Redis retry interval, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def plain(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the test's own, to look at what the limiter left in Redis."""
    client = Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    yield client
    await client.aclose()


class Edge:
    """A limiter as one gateway process has it: its own client and link to Redis."""

    def __init__(self, url: str, policy: RatePolicy, *, timeout: float = 0.25,
                 clock: FakeClock | None = None, trusted: tuple[str, ...] = (),
                 fail_open: bool = True) -> None:
        self.client = redis_client(url)
        self.link = RedisLink(self.client, timeout=timeout, retry_interval=0.5,
                              **({"clock": clock} if clock else {}))
        self.policy = policy
        self.limiter = RateLimiter(self.link, {"default": policy}, trusted_proxies=trusted,
                                   fail_open=fail_open, local=LocalTokenBucket())

    async def take(self, peer: str = "203.0.113.9", forwarded: str | None = None,
                   read_along: tuple[str, ...] = ()) -> Decision | None:
        key = self.limiter.key(self.policy, peer=peer, forwarded_for=forwarded, subject=None)
        return await self.limiter.take(self.policy, key, read_along)

    async def allowed(self, count: int, **kwargs) -> list[bool | None]:  # type: ignore[no-untyped-def]
        decisions = [await self.take(**kwargs) for _ in range(count)]
        return [None if d is None else d.allowed for d in decisions]

    async def close(self) -> None:
        await self.link.close()
        await self.client.aclose()


def _policy(burst: int, rate: float = 0.01) -> RatePolicy:
    # A fresh name for each test: buckets never carry over between tests.
    return RatePolicy(f"t{uuid.uuid4().hex[:12]}", rate=rate, burst=burst)


@pytest.fixture
async def edges(redis_url: str):  # type: ignore[no-untyped-def]
    made: list[Edge] = []

    def make(policy: RatePolicy, **kwargs) -> Edge:  # type: ignore[no-untyped-def]
        made.append(Edge(kwargs.pop("url", redis_url), policy, **kwargs))
        return made[-1]

    yield make
    for edge in made:
        await edge.close()


# --- the Lua bucket -----------------------------------------------------------------------


async def test_lua_bucket_gives_its_burst_then_refuses(edges, plain: Redis) -> None:
    edge = edges(_policy(burst=5, rate=20.0))
    decisions = [await edge.take() for _ in range(6)]
    assert all(d is not None and d.backend == "redis" for d in decisions)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]  # type: ignore[union-attr]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]  # type: ignore[union-attr]
    refused = decisions[-1]
    assert refused is not None
    assert 0 < refused.retry_after <= 1 / 20
    assert 0 < refused.reset <= 5 / 20
    assert refused.retry_after_seconds == 1
    assert dict(refused.headers())[b"retry-after"] == b"1"
    # The state expires once the bucket would be full anyway.
    key = bucket_key(edge.policy.name, "ip:203.0.113.9")
    ttl_ms = await plain.pttl(key)
    assert 0 < ttl_ms <= 5 / 20 * 1000 + 1000 + 1
    assert set(await plain.hkeys(key)) == {b"tokens", b"ts"}


async def test_lua_bucket_refills_at_its_rate(edges) -> None:
    edge = edges(_policy(burst=5, rate=10.0))
    while (await edge.take()).allowed:  # type: ignore[union-attr]
        pass
    started = time.monotonic()  # the empty bucket was seen after this
    await asyncio.sleep(0.3)
    admitted = 0
    while (await edge.take()).allowed:  # type: ignore[union-attr]
        admitted += 1
    elapsed = time.monotonic() - started
    # 0.3 s at 10/s is 3 tokens (2 to spare float rounding); at most what the time since the
    # empty bucket was seen could add, plus the fraction of a token left then.
    assert 2 <= admitted <= min(5, 1 + 10 * elapsed)


async def test_lua_bucket_is_atomic_across_connections(edges) -> None:
    # Timeouts for a busy machine: a timeout would take the request off Redis.
    policy = _policy(burst=50, rate=0.01)
    processes = [edges(policy, timeout=5) for _ in range(20)]
    started = time.monotonic()
    decisions = await asyncio.gather(*(processes[i % 20].take() for i in range(200)))
    elapsed = time.monotonic() - started
    assert all(d is not None and d.backend == "redis" for d in decisions)
    admitted = [d for d in decisions if d.allowed]  # type: ignore[union-attr]
    assert 50 <= len(admitted) <= 50 + int(0.01 * elapsed)
    # Each admitted request saw its own token: no two read the same count.
    assert sorted(d.remaining for d in admitted) == list(range(50))


async def test_keys_are_read_along_in_the_same_round_trip(edges, plain: Redis) -> None:
    edge = edges(_policy(burst=5))
    name = f"portico:test:{uuid.uuid4().hex}"
    await plain.set(name, b"value")
    decision = await edge.take(read_along=(name, name + ":absent"))
    assert decision is not None and decision.reads is not None
    assert decision.reads.values == (b"value", None)
    assert abs(decision.reads.now - time.time()) < 60  # the Redis clock, in seconds


# --- whose bucket -------------------------------------------------------------------------


async def test_spoofed_forwarded_for_does_not_choose_the_bucket(edges, plain: Redis) -> None:
    edge = edges(_policy(burst=1), trusted=("10.0.0.0/8",))

    def key(address: str) -> str:
        return bucket_key(edge.policy.name, f"ip:{address}")

    assert await edge.allowed(1, forwarded="198.51.100.1") == [True]
    assert await edge.allowed(1, forwarded="198.51.100.2") == [False]
    assert await plain.exists(key("203.0.113.9")) == 1
    assert await plain.exists(key("198.51.100.1"), key("198.51.100.2")) == 0
    # Through a trusted proxy the forwarded address is the client.
    assert await edge.allowed(2, peer="10.0.0.5", forwarded="198.51.100.1") == [True, False]
    assert await plain.exists(key("198.51.100.1")) == 1
    assert await plain.exists(key("10.0.0.5")) == 0


async def test_replicas_share_buckets(edges) -> None:
    policy = _policy(burst=3)
    one, two = edges(policy), edges(policy)
    assert await one.allowed(2) + await two.allowed(2) == [True, True, True, False]


# --- Redis stopped or hung ------------------------------------------------------------------


def _redis_errors() -> float:
    return REGISTRY.get_sample_value("portico_redis_errors_total", {"concern": "ratelimit"}) or 0


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_redis_down_fails_open_on_local_buckets_then_recovers(
        redis_server, edges, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger=LOGGER)
    policy, clock = _policy(burst=3), FakeClock()
    gateway, replica = edges(policy, clock=clock), edges(policy)
    assert await gateway.allowed(2) == [True, True]
    errors_before = _redis_errors()
    await asyncio.to_thread(redis_server.stop)
    try:
        # This process's bucket starts full: the burst, then refusals; never a failure.
        assert await gateway.allowed(5) == [True, True, True, False, False]
        # Only the first request tried Redis; the rest waited for the retry interval.
        assert _redis_errors() - errors_before == 1
        clock.now += 0.5
        assert await gateway.allowed(2) == [False, False]
        assert _redis_errors() - errors_before == 2
        assert len(_records(caplog, logging.WARNING)) == 1
        assert not gateway.link.usable
    finally:
        await asyncio.to_thread(redis_server.start)
    clock.now += 0.5
    # Shared again (the restarted Redis is empty): this process spends the burst, and the
    # replica, whose own bucket is full, is refused.
    assert await gateway.allowed(4) == [True, True, True, False]
    assert await replica.allowed(1) == [False]
    assert gateway.link.usable
    assert len(_records(caplog, logging.INFO)) == 1
    assert len(_records(caplog, logging.WARNING)) == 1


async def test_a_hung_redis_costs_one_timeout_per_retry_interval_for_every_policy(
        edges) -> None:
    """A Redis that accepts connections and never answers (a hung server, a dropped route):
    one request waits for one timeout; then nothing, the cache's reads included, goes near it
    until the retry interval has passed."""
    commands: list[bytes] = []
    connections: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while chunk := await reader.read(65536):
            commands.append(chunk)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clock = FakeClock()
    edge = edges(_policy(burst=3), url=f"redis://127.0.0.1:{port}/0", timeout=0.2, clock=clock)
    try:
        assert await edge.allowed(1) == [True]
        sent = len(commands)
        assert sent >= 1 and not edge.link.usable
        # Until the retry interval has passed, requests do not go near Redis.
        assert await edge.allowed(4) == [True, True, False, False]
        script = edge.link.script("return 1")
        assert await edge.link.run(script, [], [], concern="cache") is None
        assert len(commands) == sent
        clock.now += 0.5
        assert await edge.allowed(1) == [False]
        assert len(commands) > sent
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_redis_down_fails_closed_when_told(redis_server, edges) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    edge = edges(_policy(burst=3), clock=clock, fail_open=False)
    assert await edge.allowed(1) == [True]
    await asyncio.to_thread(redis_server.stop)
    try:
        assert await edge.allowed(2) == [None, None]
    finally:
        await asyncio.to_thread(redis_server.start)
    clock.now += 0.5
    assert await edge.allowed(1) == [True]
