"""The Redis side of the response cache: one round trip per lookup (or none, when the rate
limiter read the keys along), fills written behind in the next pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from gateway.policies.cache_entry import Entry
from gateway.policies.redis import RedisLink

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


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass
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
    """Entries in Redis, through the edge's RedisLink (which owns Redis health: while it is
    down, `lookup` answers None at once and the cache steps aside)."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._lookup = link.script(_LOOKUP)

    @property
    def usable(self) -> bool:
        return self._link.usable

    @property
    def settled(self) -> bool:
        return self._link.settled

    async def lookup(self, key: str, generation_keys: tuple[str, ...]) -> Lookup | None:
        """The entry and generations, or None when Redis is down or failed."""
        reply = await self._link.run(self._lookup, [key, *generation_keys], [], concern="cache")
        if reply is None:
            return None
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
        self._link.later("SET", key, entry.encode(), "PX", milliseconds, concern="cache",
                         on_done=on_done)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
