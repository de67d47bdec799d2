"""Cache invalidation signals, sent by the services and read by every gateway replica.

A cached response is stored with the generation numbers of what it shows (one per item, one per
collection). A write bumps those numbers in Redis before it returns, so any entry filled earlier
no longer matches and is never served again, whichever gateway replica holds it and whether the
write came through the edge or straight over gRPC. The bump is also published, so replicas can
drop in-process copies at once. The key functions here are the single definition of those names
for both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("portico.invalidation")

PREFIX = "portico"
CHANNEL = f"{PREFIX}:invalidate"


def item_generation_key(kind: str, item_id: str) -> str:
    """Generation of one resource, such as the product P001."""
    return f"{PREFIX}:gen:{kind}:{item_id}"


def collection_generation_key(kind: str) -> str:
    """Generation of a collection: every list page of that kind of resource."""
    return f"{PREFIX}:gen:{kind}"


# Bumps the item and collection generations and publishes the change, in one round trip.
_BUMP = """
redis.call('INCR', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""


class CacheSignals:
    """Bumps the cache generations of changed resources, in one round trip per write.

    Without Redis it does nothing: the gateways then bypass their cache too. When Redis cannot
    be reached, the write itself has succeeded, so the bumps are kept and sent again every
    `retry_interval` until Redis answers; entries cached before the outage therefore stop being
    served as soon as Redis is back, instead of living until their TTL."""

    def __init__(self, redis_url: str | None, *, timeout: float = 0.5,
                 retry_interval: float = 0.5) -> None:
        self._client = redis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0)) if redis_url else None
        self._bump = self._client.register_script(_BUMP) if self._client else None
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._pending: set[tuple[str, str]] = set()
        self._retrier: asyncio.Task | None = None
        self._down = False

    async def changed(self, kind: str, *item_ids: str) -> None:
        """Marks the given items of `kind` (and the lists they appear in) as changed."""
        if self._bump is None or not item_ids:
            return
        self._pending.update((kind, item_id) for item_id in item_ids)
        if not await self._flush() and self._retrier is None:
            self._retrier = asyncio.create_task(self._retry(), name="cache signals retry")

    @property
    def pending(self) -> int:
        """Bumps not yet delivered to Redis."""
        return len(self._pending)

    async def _flush(self) -> bool:
        batch = list(self._pending)
        try:
            async with asyncio.timeout(self._timeout * 2):
                pipe = self._client.pipeline(transaction=False)
                for kind, item_id in batch:
                    await self._bump(keys=[item_generation_key(kind, item_id),
                                           collection_generation_key(kind)],
                                     args=[CHANNEL, f"{kind}:{item_id}"], client=pipe)
                await pipe.execute()
        except (redis.RedisError, OSError, TimeoutError) as error:
            if not self._down:
                log.warning("cache invalidation deferred: Redis unavailable",
                            extra={"pending": len(self._pending), "error": str(error)})
            self._down = True
            return False
        self._pending.difference_update(batch)
        if self._down:
            log.info("deferred cache invalidations delivered")
        self._down = False
        return True

    async def _retry(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self._retry_interval)
                await self._flush()
        finally:
            self._retrier = None

    async def close(self) -> None:
        if self._retrier is not None:
            self._retrier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrier
        if self._client is not None:
            if self._pending:
                await self._flush()
            await self._client.aclose()
