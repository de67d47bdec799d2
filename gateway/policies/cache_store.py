"""The Redis side of the response cache: one round trip per lookup, fills written behind (in
the next pipeline, see gateway/redisbatch.py), and the outage switch that turns the cache off
(not the gateway) while Redis is unreachable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import redis.asyncio as redis

from gateway.metrics import REDIS_ERRORS
from gateway.policies.batch import RedisBatcher
from gateway.policies.cache_entry import Entry

log = logging.getLogger("portico.gateway.policies.cache")

# One round trip gives a request everything it needs to decide: the entry (or nil), the Redis
# clock (so every replica measures age on one clock) and the current generation of each key
# the page depends on (a key never bumped reads as '0'). Reply: {entry|nil, sec, usec, gen...}.
_LOOKUP = """
local now = redis.call('TIME')
local reply = {redis.call('GET', KEYS[1]), now[1], now[2]}
for i = 2, #KEYS do
  reply[#reply + 1] = redis.call('GET', KEYS[i]) or '0'
end
return reply
"""


@dataclass(frozen=True)
class Lookup:
    """What Redis said at one instant: the stored entry (if any, and readable; decoded when
    first asked for), the current generations, and the time on the Redis clock, with the local
    monotonic time it was read."""

    raw: bytes | None
    generations: tuple[str, ...]
    now: float
    read_at: float

    @classmethod
    def of(cls, raw: bytes | None, generations: list, *, now: float, read_at: float) -> Lookup:
        """A lookup from the raw values of the entry key and the generation keys."""
        return cls(raw=raw, generations=tuple(_text(gen) if gen is not None else "0"
                                              for gen in generations),
                   now=now, read_at=read_at)

    @cached_property
    def entry(self) -> Entry | None:
        return Entry.decode(self.raw) if self.raw is not None else None

    def age(self) -> float | None:
        """Seconds since the entry was stored, or None without an entry."""
        return None if self.entry is None else max(0.0, self.now - self.entry.stored_at)

    def current(self) -> Entry | None:
        """The entry if it was filled at the current generations: otherwise what it shows is
        known to have changed since, and it must never be served."""
        if self.entry is not None and self.entry.generations == self.generations:
            return self.entry
        return None

    def redis_now(self) -> float:
        """Now on the Redis clock, extrapolated from the lookup with the local monotonic clock
        (no second round trip just to read the time)."""
        return self.now + (time.monotonic() - self.read_at)


class CacheStore:
    """Entries in Redis. Any Redis failure (error, refused connection, timeout) makes the
    cache step aside for `backoff` seconds: requests go straight upstream meanwhile, and one
    warning is logged per outage rather than one per request."""

    def __init__(self, client: redis.Redis, *, timeout: float, backoff: float,
                 batcher: RedisBatcher | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if timeout <= 0 or backoff < 0:
            raise ValueError("the Redis timeout must be positive and the backoff not negative")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the cache stores bytes: give it a client without decode_responses")
        # The batcher bounds every call by its timeout (`timeout` for one of its own).
        self._batch = batcher or RedisBatcher(client, timeout=timeout)
        self._lookup = self._batch.script(_LOOKUP)
        self._backoff = backoff
        self._clock = clock
        self._retry_at = 0.0
        self._outage = False

    @property
    def available(self) -> bool:
        """False while backing off after a failure."""
        return self._clock() >= self._retry_at

    async def lookup(self, key: str, generation_keys: tuple[str, ...]) -> Lookup | None:
        """The entry and generations, or None when Redis failed."""
        try:
            reply = await self._lookup([key, *generation_keys], [])
        except (redis.RedisError, OSError, TimeoutError) as error:
            self._failed(error)
            return None
        if self._outage:
            self._outage = False
            log.info("redis reachable again, response cache resumed")
        raw, seconds, micros, *gens = reply
        return Lookup.of(raw, gens, now=int(seconds) + int(micros) / 1_000_000,
                         read_at=time.monotonic())

    def store(self, key: str, entry: Entry, *, keep_seconds: float,
              on_done: Callable[[], None] | None = None) -> None:
        """Stores `entry` for `keep_seconds` (fresh time plus stale time), written behind: the
        answer goes out without waiting for it, and `on_done` is called once the write went
        through or failed. A failure only costs a later miss. (A late fill is harmless: the
        entry carries the generations read before its upstream call.)"""
        milliseconds = max(1, int(keep_seconds * 1000))
        self._batch.later("SET", key, entry.encode(), "PX", milliseconds,
                          on_error=self._failed, on_done=on_done)

    def _failed(self, error: BaseException) -> None:
        REDIS_ERRORS.labels(concern="cache").inc()
        self._retry_at = self._clock() + self._backoff
        if not self._outage:
            self._outage = True
            log.warning("redis unreachable, response cache bypassed",
                        extra={"error": f"{type(error).__name__}: {error}"})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
