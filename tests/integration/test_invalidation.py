"""Cache invalidation signals of the services, against a real Redis: one round trip per write,
published to the gateways, and kept and delivered later when Redis is down."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from services.common.invalidation import (
    CHANNEL,
    CacheSignals,
    collection_generation_key,
    item_generation_key,
)


async def generation(client: redis.Redis, key: str) -> int:
    return int(await client.get(key) or 0)


async def test_a_change_bumps_item_and_collection_and_is_published(redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    signals = CacheSignals(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    await pubsub.get_message(timeout=1)   # the subscription confirmation
    before = [await generation(client, item_generation_key("thing", i)) for i in ("a", "b")]
    collection = await generation(client, collection_generation_key("thing"))
    await signals.changed("thing", "a", "b")
    after = [await generation(client, item_generation_key("thing", i)) for i in ("a", "b")]
    assert after == [before[0] + 1, before[1] + 1]
    assert await generation(client, collection_generation_key("thing")) == collection + 2
    messages = []
    for _ in range(2):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        messages.append(message["data"])
    assert sorted(messages) == [b"thing:a", b"thing:b"]
    await pubsub.aclose()
    await signals.close()
    await client.aclose()


async def test_bumps_made_while_redis_is_down_are_delivered_when_it_is_back(redis_server) -> None:
    signals = CacheSignals(redis_server.url, retry_interval=0.1)
    client = redis.Redis.from_url(redis_server.url)
    key = item_generation_key("thing", "outage")
    await client.aclose()
    redis_server.stop()
    try:
        await signals.changed("thing", "outage")   # does not raise: the write succeeded
        assert signals.pending == 1
    finally:
        redis_server.start()
    for _ in range(100):
        if signals.pending == 0:
            break
        await asyncio.sleep(0.1)
    assert signals.pending == 0
    client = redis.Redis.from_url(redis_server.url)
    # The test Redis keeps nothing across a restart: the one deferred bump makes it 1.
    assert await generation(client, key) == 1
    await client.aclose()
    await signals.close()


async def test_without_redis_nothing_is_signalled() -> None:
    signals = CacheSignals(None)
    await signals.changed("thing", "x")
    assert signals.pending == 0
    await signals.close()
