"""Cache invalidation signals, sent by the services and read by every gateway replica.

A cached response is stored with the generation numbers of what it shows (one per item, one per
collection). A write bumps those numbers in Redis before it returns, so any entry filled earlier
no longer matches and is never served again, whichever gateway replica holds it and whether the
write came through the edge or straight over gRPC. The bump is also published, so replicas can
drop in-process copies at once. The key functions here are the single definition of those names
for both sides.
"""

from __future__ import annotations

import logging

import redis.asyncio as redis

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
    """Bumps the cache generations of changed resources. Without Redis it does nothing: the
    gateways then bypass their cache too, so there is nothing to invalidate."""

    def __init__(self, redis_url: str | None) -> None:
        self._client = redis.Redis.from_url(redis_url, socket_timeout=1.0,
                                            socket_connect_timeout=1.0) if redis_url else None
        self._bump = self._client.register_script(_BUMP) if self._client else None

    async def changed(self, kind: str, *item_ids: str) -> None:
        """Marks the given items of `kind` (and the lists they appear in) as changed."""
        if self._bump is None:
            return
        for item_id in item_ids:
            try:
                await self._bump(
                    keys=[item_generation_key(kind, item_id), collection_generation_key(kind)],
                    args=[CHANNEL, f"{kind}:{item_id}"],
                )
            except redis.RedisError as error:
                # The write itself succeeded; cached copies now live until their TTL.
                log.warning("cache invalidation failed", extra={
                    "kind": kind, "item": item_id, "error": str(error)})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
