"""Token-bucket decisions and the per-process buckets that stand in while Redis is unreachable
(the shared buckets are a Lua script in Redis: ratelimit.lua)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Backend = Literal["redis", "local"]


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass(slots=True)
class ReadAlong:
    """Values read in the rate limiter's round trip for later steps of the same request (None
    for a missing key), with the Redis clock when they were read and the local monotonic time
    of the read."""

    values: tuple[bytes | None, ...]
    now: float
    read_at: float

    def part(self, start: int, stop: int) -> ReadAlong:
        """The values of keys start..stop-1 of the read (each step reads its own keys)."""
        return ReadAlong(self.values[start:stop], self.now, self.read_at)


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass(slots=True)
class Decision:
    """What a bucket said about one request, and what to tell the client about it."""

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float
    backend: Backend
    # Values of the keys read along in the same round trip (Redis decisions only), and the
    # Redis clock then: what the cache and the revocation check need, at no extra round trip.
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
