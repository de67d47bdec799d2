"""Writes the ends of rights to Redis for every service to read (services.common.revocation).

A write is delivered before the RPC that made it returns. When Redis cannot be reached the change
itself has happened (it is in PostgreSQL's tokens_valid_after, or the user logged out), so the
write is kept and sent again every `retry_interval` until Redis answers; meanwhile the other
services cannot read Redis either, or read it without this entry for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable

from services.common.redisconn import FAILURES, AnyRedis
from services.common.revocation import denied_key, valid_after_key

log = logging.getLogger("portico.user.revoker")

# Sets valid-after only forward in time: a delayed retry never undoes a later change.
_RAISE = """
local current = tonumber(redis.call('GET', KEYS[1]))
if current == nil or current < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""
# Clock differences between instances and the verifiers' leeway: kept a little longer.
_MARGIN_SECONDS = 60


class Revoker:
    """Ends a user's tokens (`end_tokens`) or one token (`deny`), in Redis, retried until
    delivered. Without Redis it only logs: then no service can read revocations either."""

    def __init__(self, client: AnyRedis | None, *, token_ttl: float,
                 retry_interval: float = 0.5, timeout: float = 0.5) -> None:
        self._client = client
        self._raise = client.register_script(_RAISE) if client is not None else None
        self._token_ttl = token_ttl
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._valid_after: dict[str, float] = {}
        self._denied: dict[tuple[str, str], float] = {}
        self._retrier: asyncio.Task | None = None
        self._down = False

    async def end_tokens(self, subject: str, at: float) -> None:
        """Every token of `subject` issued at or before `at` is revoked."""
        self._valid_after[subject] = max(at, self._valid_after.get(subject, at))
        await self._deliver()

    async def deny(self, subject: str, token_id: str, expires_at: float) -> None:
        """The token with this id (of user `subject`) is revoked until it expires anyway."""
        self._denied[(subject, token_id)] = expires_at
        await self._deliver()

    @property
    def pending(self) -> int:
        """Writes not yet delivered to Redis."""
        return len(self._valid_after) + len(self._denied)

    async def _deliver(self) -> None:
        if self._client is None:
            log.warning("no Redis configured: revocations reach no other service")
            self._valid_after.clear()
            self._denied.clear()
            return
        if not await self._flush() and self._retrier is None:
            self._retrier = asyncio.create_task(self._retry(), name="revocations retry")

    async def _flush(self) -> bool:
        valid_after, denied = dict(self._valid_after), dict(self._denied)
        now = time.time()
        try:
            async with asyncio.timeout(self._timeout * 2):
                await asyncio.gather(*self._writes(valid_after, denied, now))
        except FAILURES as error:
            if not self._down:
                log.error("revocations deferred: Redis unavailable",
                          extra={"pending": self.pending, "error": str(error)})
            self._down = True
            return False
        for subject, at in valid_after.items():
            if self._valid_after.get(subject) == at:
                del self._valid_after[subject]
        for token in denied:
            self._denied.pop(token, None)
        if self._down:
            log.warning("deferred revocations delivered")
        self._down = False
        return True

    def _writes(self, valid_after: dict[str, float], denied: dict[tuple[str, str], float],
                now: float) -> list[Awaitable]:
        # One command per key, sent at once (a cluster client sends each to its key's node):
        # these writes are rare (a logout, a password change), so no pipeline is needed.
        writes: list[Awaitable] = []
        for subject, at in valid_after.items():
            ttl = _seconds_left(at + self._token_ttl, now)
            if ttl > 0:
                writes.append(self._raise(keys=[valid_after_key(subject)], args=[repr(at), ttl]))
        for (subject, token_id), expires_at in denied.items():
            ttl = _seconds_left(expires_at, now)
            if ttl > 0:
                writes.append(self._client.set(denied_key(subject, token_id), "1", ex=ttl))
        return writes

    async def _retry(self) -> None:
        try:
            while self.pending:
                await asyncio.sleep(self._retry_interval)
                await self._flush()
        finally:
            self._retrier = None

    async def close(self) -> None:
        if self._retrier is not None:
            self._retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrier
        if self._client is not None and self.pending:
            await self._flush()


def _seconds_left(until: float, now: float) -> int:
    return math.ceil(until - now) + _MARGIN_SECONDS if until > now - _MARGIN_SECONDS else 0
