"""Cache invalidation signals of the services, against a real Redis: one round trip per write,
published to the gateways, kept and delivered later when Redis is down, and sent by a write an
internal program makes straight over gRPC (with its certificate and an admin's token)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
import redis.asyncio as redis

from gateway.settings import GatewaySettings
from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.invalidation import (
    CHANNEL,
    CacheSignals,
    collection_generation_key,
    item_generation_key,
)
from services.common.jwtkeys import public_key_path
from services.common.settings import ServiceSettings
from services.product import server as product_server
from tests.integration.gateway.conftest import gateway_client
from tests.trust import channel, mint, tls_for


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


async def test_a_direct_grpc_writer_invalidates_the_gateways_cache(
        mongo_uri, mongo_database_name, redis_url, state_dir) -> None:
    """An internal job (a certificate of its own, an admin service account's token) changes a
    product straight over gRPC: the gateway in this process, which cached the product, shows
    the change at once; without the token the job may read but not write."""
    settings = ServiceSettings(mongodb_uri=mongo_uri, mongodb_database=mongo_database_name,
                               redis_url=redis_url, state_dir=state_dir)
    running, cleanup = await product_server.start(settings)
    address = f"127.0.0.1:{running.port}"
    gateway = GatewaySettings(
        user_addrs=[address], product_addrs=[address], order_addrs=[address],
        redis_url=redis_url, state_dir=state_dir, access_log=False,
        jwt_public_key_file=public_key_path(settings))
    job = tls_for(state_dir, "restock-job")
    admin = mint(state_dir, "restock-bot", "admin")
    try:
        async with channel(address, job, token=admin) as writer, \
                channel(address, job) as anonymous, gateway_client(gateway) as http:
            products = product_pb2_grpc.ProductServiceStub(writer)
            product_id = f"INV-{uuid.uuid4().hex[:8]}"
            await products.CreateProduct(product_pb2.CreateProductRequest(
                id=product_id, name="Invalidated", price="4.00", stock=3))
            await http.get(f"/products/{product_id}")
            await asyncio.sleep(0.05)   # the fill, written behind, has gone out
            assert (await http.get(f"/products/{product_id}")).headers["x-cache"] == "HIT"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await product_pb2_grpc.ProductServiceStub(anonymous).UpdateProduct(
                    product_pb2.UpdateProductRequest(id=product_id, price="0.01"))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await products.UpdateProduct(product_pb2.UpdateProductRequest(
                id=product_id, price="5.00"))
            read = await http.get(f"/products/{product_id}")
            assert read.headers["x-cache"] == "MISS" and read.json()["price"] == "5.00"
    finally:
        await running.stop(0)
        await cleanup()
