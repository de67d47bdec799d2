"""The edge's one way to Redis, and the one owner of Redis health.

Every Redis call of the edge policies (the rate limiter's script, the cache's lookups and
fills) goes through one `RedisLink`: calls are batched into pipelines (batch.py), each bounded
by one timeout, and any failure (an error, a refused connection, a timeout) marks Redis down
for every policy at once. While Redis is down nobody waits for it: `run` answers None at once,
and the policies fall back on their own (per-process buckets, no cache). One request at a time
probes Redis again after `retry_interval`; when it is answered, every policy resumes. An outage
is logged once when it starts and once when it ends, and each failure is counted in
`portico_redis_errors_total` under the concern that met it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.metrics import REDIS_ERRORS, REDIS_UP
from gateway.policies.batch import RedisBatcher

log = logging.getLogger("portico.gateway.redis")

FAILURES = (RedisError, OSError, asyncio.TimeoutError)
Script = Callable[[list[str], list[Any]], Any]


def redis_client(url: str) -> redis.Redis:
    """The client behind a link: bytes answers, a short connect timeout, no client-side
    retries (a slow Redis counts as down). No socket_timeout: redis-py would wrap every
    command in asyncio.wait_for; the batcher bounds each batch instead."""
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


class RedisLink:
    """Batched Redis calls with one shared notion of whether Redis is usable."""

    def __init__(self, client: redis.Redis, *, timeout: float, retry_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if retry_interval <= 0:
            raise ValueError("retry_interval must be positive")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the edge reads bytes: give it a client without decode_responses")
        self._batcher = RedisBatcher(client, timeout=timeout)
        self.retry_interval = retry_interval
        self._clock = clock
        self._down = False
        self._retry_at = 0.0
        REDIS_UP.set(1)

    @property
    def usable(self) -> bool:
        """True unless Redis is down and it is not yet time to try it again."""
        return not self._down or self._clock() >= self._retry_at

    def script(self, text: str) -> Script:
        """A Lua script to `run`."""
        return self._batcher.script(text)

    async def run(self, script: Script, keys: list[str], args: list[Any], *,
                  concern: str) -> Any | None:
        """The script's answer, or None when Redis is down or failed just now (then counted
        under `concern`)."""
        if self._down:
            now = self._clock()
            if now < self._retry_at:
                return None
            # This call probes Redis; the others keep off it until the probe is answered.
            self._retry_at = now + self.retry_interval
        try:
            reply = await script(keys, args)
        except FAILURES as error:
            self.failed(error, concern=concern)
            return None
        self._answered()
        return reply

    def later(self, *args: Any, concern: str, on_done: Callable[[], None] | None = None) -> None:
        """A write whose answer nobody waits for (a cache fill): it rides in front of the next
        batch, or goes alone shortly after. A failure only counts against Redis health."""
        self._batcher.later(*args, on_error=lambda error: self.failed(error, concern=concern),
                            on_done=on_done)

    def failed(self, error: BaseException, *, concern: str) -> None:
        REDIS_ERRORS.labels(concern=concern).inc()
        self._retry_at = self._clock() + self.retry_interval
        if not self._down:
            self._down = True
            REDIS_UP.set(0)
            log.warning("Redis is unavailable: rate limits fall back to this process, the "
                        "cache is bypassed; trying again every %s s", self.retry_interval,
                        extra={"error": f"{type(error).__name__}: {error}", "concern": concern})

    def _answered(self) -> None:
        if self._down:
            self._down = False
            self._retry_at = 0.0
            REDIS_UP.set(1)
            log.info("Redis is available again: shared rate limits and the cache resume")

    async def close(self) -> None:
        """Sends the writes still queued, then closes the link's connection."""
        await self._batcher.close()
