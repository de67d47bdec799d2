"""Token buckets for the rate limiter: shared ones in Redis (one atomic Lua script per request)
and per-process ones that stand in while Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.metrics import REDIS_ERRORS
from gateway.policies.batch import RedisBatcher
from gateway.policies.readalong import ReadAlong

log = logging.getLogger("portico.gateway.policies.ratelimit")

KEY_PREFIX = "portico:rl:"
LUA_SCRIPT = (Path(__file__).parent / "ratelimit.lua").read_text()

Backend = Literal["redis", "local"]


def bucket_key(policy: str, client: str) -> str:
    """The Redis key of one client's bucket under one policy: the only place keys are made."""
    return f"{KEY_PREFIX}{policy}:{client}"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a bucket said about one request, and what to tell the client about it."""

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float
    backend: Backend
    # Values of the read-along keys, read in the same round trip (Redis decisions only).
    reads: ReadAlong | None = None

    def headers(self) -> list[tuple[bytes, bytes]]:
        """RateLimit-* headers (IETF draft); Retry-After as well when refused."""
        headers = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(self.reset)).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return headers

    @property
    def retry_after_seconds(self) -> int:
        """Retry-After is whole seconds; never 0, which would invite an immediate retry."""
        return max(1, math.ceil(self.retry_after))


def _decision(allowed: bool, tokens: float, *, rate: float, burst: int,
              backend: Backend) -> Decision:
    # The same arithmetic as the Lua script's, so both backends answer alike.
    return Decision(
        allowed=allowed,
        limit=burst,
        remaining=math.floor(tokens),
        reset=(burst - tokens) / rate,
        retry_after=0.0 if allowed else (1 - tokens) / rate,
        backend=backend,
    )


class LocalTokenBucket:
    """Token buckets of this process alone, one per key, at most `max_keys` of them (the least
    recently used go first; a forgotten bucket comes back full, as an idle one would be)."""

    def __init__(self, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, *, rate: float, burst: int) -> Decision:
        """Take one token from the bucket at `key`, if there is one."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(key, (float(burst), now))
        tokens = min(float(burst), tokens + max(0.0, now - stamp) * rate)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return _decision(allowed, tokens, rate=rate, burst=burst, backend="local")


class RedisTokenBucket:
    """Token buckets shared by every gateway replica, in Redis.

    `take` answers None when Redis is unavailable (any RedisError, OSError or timeout). It then
    leaves Redis alone for `retry_interval` seconds, so a dead Redis does not add a timeout to
    each request; after that one request tries it again and, if it answers, shared limiting
    resumes. The outage is logged once when it starts and once when it ends.
    """

    def __init__(self, client: Redis, *, retry_interval: float = 0.5,
                 call_timeout: float = 0.5, batcher: RedisBatcher | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if retry_interval <= 0 or call_timeout <= 0:
            raise ValueError("retry_interval and call_timeout must be positive")
        self.retry_interval = retry_interval
        self._clock = clock
        # Calls go through a batcher, which bounds each by its timeout (`call_timeout` for one
        # of its own). Sharing the response cache's lets its fills ride in these pipelines.
        self._batcher = batcher or RedisBatcher(client, timeout=call_timeout)
        self._script = self._batcher.script(LUA_SCRIPT)
        self._down = False
        self._retry_at = 0.0
        self._answered_when_failed = 0

    @property
    def available(self) -> bool:
        """False from a failed call until a call succeeds again."""
        return not self._down

    async def take(self, key: str, *, rate: float, burst: int,
                   read_along: tuple[str, ...] = ()) -> Decision | None:
        """Take one token from the shared bucket at `key`, reading the `read_along` keys in
        the same round trip; None when Redis is unavailable."""
        now = self._clock()
        # While backing off, Redis is tried again early when the batcher has had an answer
        # since this limiter's failure (the response cache sharing it found Redis back).
        if now < self._retry_at and self._batcher.answered == self._answered_when_failed:
            return None
        if self._down:
            # This request probes Redis; the others keep off it until the probe is done.
            self._retry_at = now + self.retry_interval
            self._answered_when_failed = self._batcher.answered
        try:
            reply = await self._script([key, *read_along], [rate, burst])
        except (RedisError, OSError, asyncio.TimeoutError) as error:
            self._failed(error)
            return None
        if self._down:
            self._down = False
            self._retry_at = 0.0
            log.info("Redis is available again for rate limiting")
        allowed, remaining, reset, retry_after, seconds, micros, *values = reply
        reads = None
        if read_along:
            reads = ReadAlong(read_along, tuple(values), int(seconds) + int(micros) / 1e6,
                              time.monotonic())
        return Decision(
            allowed=bool(allowed),
            limit=burst,
            remaining=int(remaining),
            reset=float(reset),
            retry_after=float(retry_after),
            backend="redis",
            reads=reads,
        )

    def _failed(self, error: BaseException) -> None:
        REDIS_ERRORS.labels(concern="ratelimit").inc()
        self._retry_at = self._clock() + self.retry_interval
        self._answered_when_failed = self._batcher.answered
        if not self._down:
            self._down = True
            log.warning("Redis is unavailable for rate limiting; trying it again every %s s",
                        self.retry_interval, extra={"error": repr(error)})
