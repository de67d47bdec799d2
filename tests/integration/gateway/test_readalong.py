"""One Redis round trip for a cache hit: the cache lookup rides along with the rate limiter's
token in one script, counted with Redis's own command statistics."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.invalidation import item_generation_key
from tests.integration.gateway.conftest import gateway_client, grpc_server, settings_for


class OneProduct(product_pb2_grpc.ProductServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def GetProduct(self, request, context):
        self.calls += 1
        return product_pb2.GetProductResponse(product=product_pb2.Product(
            id=request.id, name="Readalong", price="1.00", stock=3))


async def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@pytest.fixture
async def setup(signing_key, redis_url):
    servicer = OneProduct()
    async with grpc_server((product_pb2_grpc.add_ProductServiceServicer_to_server, servicer,
                            "portico.product.v1.ProductService")) as address:
        observer = redis.Redis.from_url(redis_url)
        async with gateway_client(settings_for(address, signing_key, redis_url)) as http:
            yield http, servicer, observer
        await observer.aclose()


async def test_a_cache_hit_costs_one_redis_call(setup) -> None:
    http, servicer, observer = setup
    first = await http.get("/products/RA1")
    assert first.headers["x-cache"] == "MISS"
    await asyncio.sleep(0.05)  # its fill, written behind, has gone out
    before = await command_calls(observer)
    second = await http.get("/products/RA1")
    after = await command_calls(observer)
    assert second.headers["x-cache"] == "HIT" and second.json()["name"] == "Readalong"
    assert servicer.calls == 1
    # The limiter's script (with the entry and its generation read inside it) and nothing else
    # from the gateway; the observer's own INFO is the other command.
    scripts = sum(after.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval"))
    assert scripts == 1
    assert after.get("set", 0) == before.get("set", 0)
    assert "ratelimit-remaining" in second.headers   # the token was taken in that same call


async def test_a_write_seen_in_the_same_round_trip(setup) -> None:
    """The generation read along is the current one: a bump between two GETs is a MISS."""
    http, servicer, observer = setup
    await http.get("/products/RA2")
    await observer.incr(item_generation_key("product", "RA2"))
    again = await http.get("/products/RA2")
    assert again.headers["x-cache"] == "MISS" and servicer.calls == 2
