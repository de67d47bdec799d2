"""Cache invalidation signals, sent by the services and read by every gateway replica.

A cached response is stored with the generation number of what it shows (one per item, one per
collection). A write bumps those numbers in Redis before it returns, so any entry filled earlier
no longer matches and is never served again, whichever gateway replica holds it and whether the
write came through the edge or straight over gRPC. The bump is also published, for anyone who
wants to hear of it. The key functions here are the single definition of those names for both
sides.

Key layout and hash tags (what Redis Cluster hashes is the part in braces):

    portico:gen:{product:P001}   the item's generation; its tag `product:P001` is the item's
    portico:gen:{product}        the collection's generation; its tag `product` is the kind's

The gateway stores a cached page under the tag of the one generation it follows
(gateway/policies/cache_entry.py), so a page's lookup (entry and generation) is one script in
one slot. Tagging item generations with the kind too would put the item and its collection in
one slot, and with them every cached page of the catalogue: one primary would carry all of the
cache's reads and writes. So item and collection live in different slots, and in cluster mode a
write bumps them in two steps (`CacheSignals`), which is as safe as the one atomic script of
standalone mode:

- a page follows exactly one generation (an item page its item's, a list page its
  collection's), and an entry is served only while that one generation still has the value read
  before the upstream read that filled it;
- each bump comes after the data was written and before the write is acknowledged, so for
  each page separately: either the bump came before a filler's read of the generation (then
  its upstream read saw the new data), or after it (then its entry's generation is behind and
  it is never served). Neither argument looks at the other generation, so the order of the two
  bumps cannot make an entry stale; only a read made while the write is still unacknowledged
  may see one page new and the other old, as it may today between the data write and the bump.
- the order is fixed all the same: item generations first, then the collection's with the
  publish in its script, so a subscriber never hears of a change before both bumps are in, and
  a retry after a failure just bumps again (an extra bump costs one extra miss, nothing else).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.redisconn import FAILURES, RedisMode, connect, is_cluster

log = logging.getLogger("portico.invalidation")

PREFIX = "portico"
CHANNEL = f"{PREFIX}:invalidate"


def generation_tag(kind: str, item_id: str | None = None) -> str:
    """The hash tag of a generation (an item's, or the collection's without `item_id`), and of
    every cached page that follows it."""
    return kind if item_id is None else f"{kind}:{item_id}"


def item_generation_key(kind: str, item_id: str) -> str:
    """Generation of one resource, such as the product P001."""
    return f"{PREFIX}:gen:{{{generation_tag(kind, item_id)}}}"


def collection_generation_key(kind: str) -> str:
    """Generation of a collection: every list page of that kind of resource."""
    return f"{PREFIX}:gen:{{{generation_tag(kind)}}}"


# Standalone: bumps the item and collection generations and publishes the change, in one
# round trip (KEYS are in two slots: a cluster refuses this script).
_BUMP = """
redis.call('INCR', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""
# Cluster, the second step: the collection's generation, then the publish of each item changed.
_BUMP_COLLECTION = """
redis.call('INCR', KEYS[1])
for i = 2, #ARGV do
  redis.call('PUBLISH', ARGV[1], ARGV[i])
end
return 1
"""


class CacheSignals:
    """Bumps the cache generations of changed resources: in one round trip per write on a
    standalone Redis; in two steps on a cluster (the item generations, then the collection's:
    see the module's docstring for why that is as safe).

    Without Redis it does nothing: the gateways then bypass their cache too. When Redis cannot
    be reached, the write itself has succeeded, so the bumps are kept and sent again every
    `retry_interval` until Redis answers; entries cached before the outage therefore stop being
    served as soon as Redis is back, instead of living until their TTL."""

    def __init__(self, redis_url: str | None, *, mode: RedisMode = "standalone",
                 timeout: float = 0.5, retry_interval: float = 0.5) -> None:
        self._client = connect(redis_url, mode=mode, timeout=timeout,
                               connect_timeout=timeout) if redis_url else None
        self._bump = self._client.register_script(_BUMP) if self._client else None
        self._bump_collection = (self._client.register_script(_BUMP_COLLECTION)
                                 if self._client else None)
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
                if is_cluster(self._client):
                    await self._two_steps(batch)
                else:
                    await self._one_step(batch)
        except FAILURES as error:
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

    async def _one_step(self, batch: list[tuple[str, str]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for kind, item_id in batch:
            await self._bump(keys=[item_generation_key(kind, item_id),
                                   collection_generation_key(kind)],
                             args=[CHANNEL, f"{kind}:{item_id}"], client=pipe)
        await pipe.execute()

    async def _two_steps(self, batch: list[tuple[str, str]]) -> None:
        # Step 1, the items: one pipeline, which the cluster client splits per node and sends
        # to the nodes at once. Step 2 only once every item's bump is in.
        pipe = self._client.pipeline(transaction=False)
        for kind, item_id in batch:
            pipe.incr(item_generation_key(kind, item_id))
        await pipe.execute()
        kinds: dict[str, list[str]] = {}
        for kind, item_id in batch:
            kinds.setdefault(kind, []).append(f"{kind}:{item_id}")
        await asyncio.gather(*(
            self._bump_collection(keys=[collection_generation_key(kind)], args=[CHANNEL, *items])
            for kind, items in kinds.items()))

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
