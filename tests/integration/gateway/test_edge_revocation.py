"""Revoked tokens at the edge: refused (401 TOKEN_REVOKED) before any call, on what the rate
limiter read in its one Redis round trip; and while Redis is down, an admin token gets no admin
rights (503 REVOCATION_UNVERIFIED) where they matter, while a customer's still works."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest
import redis.asyncio as redis

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.revocation import denied_key, valid_after_key
from tests.integration.gateway.conftest import gateway_client, grpc_server, settings_for


class Products(product_pb2_grpc.ProductServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def GetProduct(self, request, context):
        self.calls += 1
        return product_pb2.GetProductResponse(product=product_pb2.Product(
            id=request.id, name="Revoked", price="1.00", stock=1))

    async def CreateProduct(self, request, context):
        self.calls += 1
        return product_pb2.CreateProductResponse(product=product_pb2.Product(
            id="NEW", name=request.name, price=request.price))


@pytest.fixture(scope="module")
async def products():
    servicer = Products()
    async with grpc_server((product_pb2_grpc.add_ProductServiceServicer_to_server, servicer,
                            "portico.product.v1.ProductService")) as address:
        yield servicer, address


@pytest.fixture
async def observer(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def token(signing_key, subject: str, role: str = "customer") -> tuple[str, str]:
    """An access token as the user service issues it (a jti, a sub-second iat), and its jti."""
    jti, now = uuid.uuid4().hex, time.time()
    claims = {"sub": subject, "role": role, "iat": round(now, 6), "exp": int(now) + 600,
              "iss": "portico", "jti": jti}
    return jwt.encode(claims, signing_key[0], algorithm="EdDSA"), jti


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def scripts_run(observer: redis.Redis) -> int:
    """Scripts Redis ran: each one of the edge's round trips (what they call inside is not
    another round trip)."""
    stats = await observer.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("evalsha", "eval"))


async def test_a_token_issued_before_its_user_was_revoked_is_refused_at_once(
        products, signing_key, redis_url, observer) -> None:
    servicer, address = products
    user = f"u-{uuid.uuid4().hex[:8]}"
    good, _ = token(signing_key, user)
    async with gateway_client(settings_for(address, signing_key, redis_url)) as http:
        assert (await http.get("/products/R1", headers=bearer(good))).status_code == 200
        calls = servicer.calls
        # The user service writes this on a deletion, a role or a password change.
        await observer.set(valid_after_key(user), str(time.time()))
        refused = await http.get("/products/R1", headers=bearer(good))
        newer, _ = token(signing_key, user)
        await asyncio.sleep(0.01)
        accepted = await http.get("/products/R2", headers=bearer(newer))
    assert refused.status_code == 401 and refused.json()["code"] == "TOKEN_REVOKED"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "ratelimit-limit" in refused.headers
    assert servicer.calls == calls + 1  # the newer token's call only
    assert accepted.status_code == 200


async def test_a_logged_out_token_is_refused_and_others_of_its_user_are_not(
        products, signing_key, redis_url, observer) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    (ended, jti), (other, _) = token(signing_key, user), token(signing_key, user)
    await observer.set(denied_key(user, jti), "1", ex=600)
    async with gateway_client(settings_for(products[1], signing_key, redis_url)) as http:
        refused = await http.get("/products/R3", headers=bearer(ended))
        fine = await http.get("/products/R3", headers=bearer(other))
    assert (refused.status_code, refused.json()["code"]) == (401, "TOKEN_REVOKED")
    assert fine.status_code == 200


@pytest.mark.parametrize("limited", [True, False])
async def test_the_check_costs_no_round_trip_of_its_own_when_the_limiter_reads_it(
        products, signing_key, redis_url, observer, limited) -> None:
    good, _ = token(signing_key, f"u-{uuid.uuid4().hex[:8]}")
    settings = settings_for(products[1], signing_key, redis_url, rate_limit_enabled=limited)
    async with gateway_client(settings) as http:
        await http.get("/products/R4", headers=bearer(good))
        await asyncio.sleep(0.05)  # the cache fill, written behind, has gone out
        before = await scripts_run(observer)
        hit = await http.get("/products/R4", headers=bearer(good))
        after = await scripts_run(observer)
    assert hit.headers["x-cache"] == "HIT"
    # Limited: the limiter's script reads the cache entry and the revocation keys. Not
    # limited: the cache's own lookup, and one read of the revocation keys.
    assert after - before == (1 if limited else 2)


async def test_while_redis_is_down_an_admin_token_has_no_admin_rights(
        products, signing_key, redis_server, redis_url) -> None:
    servicer, address = products
    admin, _ = token(signing_key, f"a-{uuid.uuid4().hex[:8]}", role="admin")
    customer, _ = token(signing_key, f"u-{uuid.uuid4().hex[:8]}")
    new = {"name": "Lamp", "price": "1.00"}
    async with gateway_client(settings_for(address, signing_key, redis_url)) as http:
        assert (await http.post("/products", json=new, headers=bearer(admin))).status_code \
            == 201
        await asyncio.to_thread(redis_server.stop)
        try:
            write = await http.post("/products", json=new, headers=bearer(admin))
            admin_read = await http.get("/products/R5", headers=bearer(admin))
            customer_read = await http.get("/products/R5", headers=bearer(customer))
            upstreams = await http.get("/admin/upstreams", headers=bearer(admin))
        finally:
            await asyncio.to_thread(redis_server.start)
    assert (write.status_code, write.json()["code"]) == (503, "REVOCATION_UNVERIFIED")
    assert write.headers["retry-after"] == "1"
    assert upstreams.status_code == 503
    # What needs no admin right still works for both (limited by this process meanwhile).
    assert (admin_read.status_code, customer_read.status_code) == (200, 200)
