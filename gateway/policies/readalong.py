"""Redis reads that ride along with the rate limiter's round trip.

A cached GET needs two things from Redis: a token from its bucket and the cache entry with the
generations it depends on. Asking for both in one round trip halves the Redis cost of a cache
hit. The cache middleware says which keys it will want (`plan`); the rate limiter's script reads
them after taking the token, at the same instant, and leaves the values in the request's state;
the cache uses them instead of its own lookup. Nothing else changes: without the values (Redis
down, no rate limit, a bypassing request) the cache looks them up itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

STATE_KEY = "redis_read_along"

# Given a request, the Redis keys a later middleware will read for it, or None.
Planner = Callable[[Scope], tuple[str, ...] | None]


@dataclass(frozen=True, slots=True)
class ReadAlong:
    """The values of `keys` (None for a missing key) and the Redis clock when they were read,
    with the local monotonic time of the read."""

    keys: tuple[str, ...]
    values: tuple[bytes | None, ...]
    now: float
    read_at: float


def take(scope: Scope, keys: tuple[str, ...]) -> ReadAlong | None:
    """The read-along values for exactly `keys`, once: a second use would be an old read."""
    state = scope.get("state")
    reads = state.pop(STATE_KEY, None) if state else None
    return reads if reads is not None and reads.keys == keys else None
