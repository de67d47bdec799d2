"""The services' Redis work against a real Redis Cluster: cache invalidations (two steps,
published), revocations written by the user service and read by every service and by the
gateway's whole pipeline, and the login throttle shared by user-service instances."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
import redis.asyncio as redis

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.errors import ResourceExhausted
from services.common.identity import Claims
from services.common.invalidation import (
    CHANNEL,
    CacheSignals,
    collection_generation_key,
    item_generation_key,
)
from services.common.redisconn import connect
from services.common.revocation import RevocationReader
from services.user.revoker import Revoker
from services.user.throttle import LoginThrottle
from tests.integration.gateway.conftest import gateway_client, grpc_server, settings_for


async def _int(client, key: str) -> int:  # type: ignore[no-untyped-def]
    return int(await client.get(key) or 0)


async def test_a_change_bumps_item_and_collection_and_is_published(
        redis_cluster, cluster_url, cluster_client) -> None:
    # PUBLISH reaches every node of a cluster: a subscriber on any one hears it.
    listener = redis.Redis.from_url(f"redis://:{redis_cluster.password}@"
                                    f"{redis_cluster.nodes[-1].address}/0")
    pubsub = listener.pubsub()
    await pubsub.subscribe(CHANNEL)
    await pubsub.get_message(timeout=1)
    kind = f"thing{uuid.uuid4().hex[:6]}"
    signals = CacheSignals(cluster_url, mode="cluster")
    try:
        await signals.changed(kind, "a", "b")
        assert [await _int(cluster_client, item_generation_key(kind, i))
                for i in ("a", "b")] == [1, 1]
        assert await _int(cluster_client, collection_generation_key(kind)) >= 1
        heard = [await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
                 for _ in range(2)]
        assert sorted(m["data"] for m in heard) == [f"{kind}:a".encode(), f"{kind}:b".encode()]
        assert signals.pending == 0
    finally:
        await signals.close()
        await pubsub.aclose()
        await listener.aclose()


def _claims(user: str, jti: str, issued: float) -> Claims:
    return Claims(subject=user, role="customer", issued_at=issued, expires_at=issued + 600,
                  token_id=jti)


async def test_revocations_reach_every_reader(cluster_url) -> None:
    writer = connect(cluster_url, mode="cluster", timeout=1, connect_timeout=1)
    readers = [connect(cluster_url, mode="cluster", timeout=1, connect_timeout=1)
               for _ in range(2)]
    revoker = Revoker(writer, token_ttl=600)
    user, now = f"u-{uuid.uuid4().hex[:8]}", time.time()
    old, logged_out, fresh = (_claims(user, "j1", now - 10), _claims(user, "j2", now + 1),
                              _claims(user, "j3", now + 1))
    try:
        await revoker.end_tokens(user, now)
        await revoker.deny(user, "j2", now + 600)
        assert revoker.pending == 0
        for client in readers:
            reader = RevocationReader(client, memo_seconds=0)
            assert [await reader.revoked(c) for c in (old, logged_out, fresh)] == \
                [True, True, False]
    finally:
        await revoker.close()
        for client in (writer, *readers):
            await client.aclose()


async def test_the_login_throttle_is_shared_by_instances(cluster_url) -> None:
    clients = [connect(cluster_url, mode="cluster", timeout=1, connect_timeout=1)
               for _ in range(2)]
    one, two = (LoginThrottle(client, free_failures=2, base_seconds=5) for client in clients)
    email = f"shared-{uuid.uuid4().hex[:8]}@example.com"
    try:
        await one.attempt(email)
        await two.attempt(email)   # the second failure in a row, on the other instance
        with pytest.raises(ResourceExhausted):
            await one.attempt(email)
        await two.succeeded(email)
        await one.attempt(email)   # cleared everywhere
    finally:
        for client in clients:
            await client.aclose()


class Products(product_pb2_grpc.ProductServiceServicer):
    async def GetProduct(self, request, context):
        return product_pb2.GetProductResponse(product=product_pb2.Product(
            id=request.id, name="Clustered", price="1.00", stock=1))


def _token(signing_key, user: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    jti, now = uuid.uuid4().hex, time.time()
    claims = {"sub": user, "role": "customer", "iat": round(now, 6), "exp": int(now) + 600,
              "iss": "portico", "jti": jti}
    return jwt.encode(claims, signing_key[0], algorithm="EdDSA"), jti


async def test_the_gateway_on_a_cluster_refuses_a_revoked_token_and_caches(
        signing_key, cluster_url) -> None:
    writer = connect(cluster_url, mode="cluster", timeout=1, connect_timeout=1)
    revoker = Revoker(writer, token_ttl=600)
    user = f"u-{uuid.uuid4().hex[:8]}"
    (ended, jti), (other, _) = _token(signing_key, user), _token(signing_key, user)
    async with grpc_server((product_pb2_grpc.add_ProductServiceServicer_to_server, Products(),
                            "portico.product.v1.ProductService")) as address:
        settings = settings_for(address, signing_key, cluster_url, redis_mode="cluster")
        async with gateway_client(settings) as http:
            first = await http.get("/products/C1", headers={"Authorization": f"Bearer {ended}"})
            await revoker.deny(user, jti, time.time() + 600)
            refused = await http.get("/products/C1",
                                     headers={"Authorization": f"Bearer {ended}"})
            fine = await http.get("/products/C1", headers={"Authorization": f"Bearer {other}"})
            ready = await http.get("/readyz")
    await revoker.close()
    await writer.aclose()
    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    assert (refused.status_code, refused.json()["code"]) == (401, "TOKEN_REVOKED")
    assert (fine.status_code, fine.headers["x-cache"]) == (200, "HIT")
    assert "ratelimit-remaining" in fine.headers
    assert "redis" not in ready.json()["detail"]  # (the stand-in serves no health)
