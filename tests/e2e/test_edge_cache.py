"""The response cache through the real stack: HIT/MISS/304, never stale after a write (through
the edge or straight over gRPC), one upstream call for many concurrent misses, private data
never shared, and stale-if-error with every product instance down.

"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from portico.product.v1 import product_pb2, product_pb2_grpc
from scripts.devstack.stack import Stack
from tests.e2e.conftest import Account, redis_db
from tests.e2e.helpers import (
    NO_CACHE,
    create_product,
    instance_state,
    metric,
    private_stack,
    upstream_calls,
    wait_for,
)
from tests.trust import sync_channel, tls_for


# -- HIT, MISS, validators ---------------------------------------------------------------------
def test_second_read_is_a_hit_with_age_and_etag(api: httpx.Client, new_product) -> None:
    product = new_product(price="3.50")
    first = api.get(f"/products/{product['id']}")
    second = api.get(f"/products/{product['id']}")
    assert first.status_code == second.status_code == 200
    assert first.headers["X-Cache"] == "MISS" and "Age" not in first.headers
    assert second.headers["X-Cache"] == "HIT"
    assert int(second.headers["Age"]) >= 0
    assert first.headers["ETag"] == second.headers["ETag"] and first.headers["ETag"]
    assert second.json() == first.json() == product


def test_matching_if_none_match_is_304(api: httpx.Client, new_product) -> None:
    product = new_product()
    etag = api.get(f"/products/{product['id']}").headers["ETag"]
    same = api.get(f"/products/{product['id']}", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["ETag"] == etag
    other = api.get(f"/products/{product['id']}", headers={"If-None-Match": '"other"'})
    assert other.status_code == 200 and other.json()["id"] == product["id"]


def test_no_cache_from_the_client_goes_upstream(api: httpx.Client, new_product) -> None:
    product = new_product()
    api.get(f"/products/{product['id']}")
    before = upstream_calls(api, "product", code="OK")
    answers = [api.get(f"/products/{product['id']}", headers=NO_CACHE) for _ in range(3)]
    assert [a.headers["X-Cache"] for a in answers] == ["MISS"] * 3
    assert upstream_calls(api, "product", code="OK") - before == 3


# -- never stale after a write -----------------------------------------------------------------
def test_read_after_put_and_delete_through_the_edge(api: httpx.Client, admin: Account,
                                                     new_product) -> None:
    product = new_product(price="1.00")
    path = f"/products/{product['id']}"
    for cents in range(1, 6):
        api.get(path)
        assert api.get(path).headers["X-Cache"] == "HIT"
        price = f"2.{cents:02d}"
        updated = api.put(path, json={"price": price}, headers=admin.headers)
        assert updated.status_code == 200, updated.text
        read = api.get(path)
        assert read.status_code == 200 and read.json()["price"] == price, read.text
    assert api.get(path).headers["X-Cache"] == "HIT"
    assert api.delete(path, headers=admin.headers).status_code == 204
    assert [api.get(path).status_code for _ in range(3)] == [404] * 3


def test_read_after_an_update_made_directly_over_grpc(api: httpx.Client, stack: Stack,
                                                      admin: Account, new_product) -> None:
    """An internal job (its own certificate of the stack's CA, and an admin's token) changes a
    product straight over gRPC: the gateway's cache shows the change at once."""
    product = new_product(price="4.00")
    path = f"/products/{product['id']}"
    job = tls_for(stack.config.state_dir.resolve(), "restock-job")
    for round_, address in enumerate(stack.addresses["product"]):
        api.get(path)
        assert api.get(path).headers["X-Cache"] == "HIT"
        with sync_channel(address, job, token=admin.token) as channel:
            stub = product_pb2_grpc.ProductServiceStub(channel)
            stub.UpdateProduct(product_pb2.UpdateProductRequest(
                id=product["id"], price=f"5.0{round_}", name=f"Renamed {round_}"), timeout=10)
        read = api.get(path)
        assert read.status_code == 200
        assert (read.json()["price"], read.json()["name"]) == (f"5.0{round_}",
                                                               f"Renamed {round_}")


def test_an_order_changes_the_stock_seen_through_the_cache(api: httpx.Client, new_customer,
                                                           new_product) -> None:
    customer = new_customer()
    product = new_product(price="1.00", stock=10)
    path = f"/products/{product['id']}"
    api.get(path)
    assert api.get(path).headers["X-Cache"] == "HIT"
    placed = api.post("/orders", json={"items": [{"product_id": product["id"], "quantity": 3}],
                                       "payment": {"token": "tok_visa"}},
                      headers=customer.headers)
    assert placed.status_code == 201, placed.text
    assert api.get(path).json()["stock"] == 7
    assert api.get(path).headers["X-Cache"] == "HIT"
    cancelled = api.delete(f"/orders/{placed.json()['id']}", headers=customer.headers)
    assert cancelled.status_code == 204
    assert api.get(path).json()["stock"] == 10


async def test_fifty_concurrent_misses_make_one_upstream_call(api: httpx.Client, stack: Stack,
                                                              new_product) -> None:
    product = new_product()
    before = upstream_calls(api, "product")
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=stack.gateway_url, limits=limits,
                                 timeout=30) as client:
        answers = await asyncio.gather(*(client.get(f"/products/{product['id']}")
                                         for _ in range(50)))
    assert upstream_calls(api, "product") - before == 1
    assert {a.status_code for a in answers} == {200}
    assert {a.content for a in answers} == {answers[0].content}
    assert {a.headers["X-Cache"] for a in answers} <= {"MISS", "HIT"}
    assert answers[0].json()["id"] == product["id"]


async def test_the_list_never_shows_a_product_after_its_delete_returned(
        api: httpx.Client, admin: Account, stack: Stack, new_product) -> None:
    """Readers keep filling the list's cache entry while products are deleted one by one: no
    read that started after a DELETE returned may show that product."""
    prefix = f"Gone {uuid.uuid4().hex[:8]} "
    ids = [new_product(name=f"{prefix}{i}")["id"] for i in range(5)]
    reads: list[tuple[float, set[str], str]] = []   # (started, ids shown, X-Cache)
    deleted_at: dict[str, float] = {}
    done = asyncio.Event()

    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
        async def reader() -> None:
            while not done.is_set():
                started = time.monotonic()
                answer = await client.get("/products", params={"name": prefix, "limit": 100})
                assert answer.status_code == 200, answer.text
                reads.append((started, {p["id"] for p in answer.json()},
                              answer.headers["X-Cache"]))

        readers = [asyncio.create_task(reader()) for _ in range(3)]
        try:
            for product_id in ids:
                await asyncio.sleep(0.1)   # let the readers fill the entry between writes
                answer = await client.delete(f"/products/{product_id}",
                                             headers=admin.headers)
                assert answer.status_code == 204
                deleted_at[product_id] = time.monotonic()
        finally:
            done.set()
            await asyncio.gather(*readers)
    final = api.get("/products", params={"name": prefix, "limit": 100})
    assert final.status_code == 200 and final.json() == []
    shown_after_delete = [(product_id, cache) for started, shown, cache in reads
                          for product_id, when in deleted_at.items()
                          if started > when and product_id in shown]
    assert shown_after_delete == []
    assert any(cache == "HIT" for _, _, cache in reads)   # the cache was really in the way


# -- private data ------------------------------------------------------------------------------
def test_users_and_orders_are_never_cached_nor_shared(api: httpx.Client, new_customer,
                                                      new_product) -> None:
    alice, bob = new_customer(), new_customer()
    product = new_product(price="1.00")
    placed = api.post("/orders", json={"items": [{"product_id": product["id"], "quantity": 1}],
                                       "payment": {"token": "tok_visa"},
                                       "shipping_address": "Alice's secret street 1"},
                      headers=alice.headers)
    assert placed.status_code == 201, placed.text
    order_path = f"/orders/{placed.json()['id']}"
    user_path = f"/users/{alice.id}"

    for path in (user_path, order_path, "/orders"):
        for _ in range(2):
            own = api.get(path, headers=alice.headers)
            assert own.status_code == 200, own.text
            assert "X-Cache" not in own.headers and "ETag" not in own.headers
    assert alice.email in api.get(user_path, headers=alice.headers).text

    not_hers = {user_path: 403, order_path: 404}
    for path, status in not_hers.items():
        for headers in (bob.headers, {}):
            other = api.get(path, headers=headers)
            assert other.status_code == (status if headers else 401)
            assert other.headers["content-type"] == "application/problem+json"
            assert "X-Cache" not in other.headers
            assert alice.email not in other.text and "secret street" not in other.text
    bobs = api.get("/orders", headers=bob.headers)
    assert bobs.status_code == 200 and bobs.json() == []


# -- stale-if-error ----------------------------------------------------------------------------
TTL, MAX_STALE = 1, 5


@pytest.fixture(scope="module")
def short_ttl_stack(tmp_path_factory, pg_url, redis_url, mongo_uri):
    yield from private_stack(
        tmp_path_factory.mktemp("stale"), pg_url=pg_url, redis_url=redis_db(redis_url, 4),
        mongo_uri=mongo_uri, env={"PORTICO_CACHE_TTL_SECONDS": str(TTL),
                                  "PORTICO_CACHE_MAX_STALE_SECONDS": str(MAX_STALE)})


def test_stale_while_every_product_instance_is_down_then_503(short_ttl_stack) -> None:
    stack, client, admin = short_ttl_stack
    product = create_product(client, admin, price="6.00")
    path = f"/products/{product['id']}"
    addresses = stack.addresses["product"]
    try:
        stack.kill("product-1")
        warm = client.get(path)
        assert warm.status_code == 200 and warm.headers["X-Cache"] == "MISS"
        stack.kill("product-2")
        wait_for(lambda: not any(instance_state(client, admin, "product", a)["healthy"]
                                 for a in addresses), "both product instances to be seen down")
        # Fresh copies first (HIT), then STALE once past the TTL, then 503 past max-stale.
        seen = []
        for _ in range(200):
            answer = client.get(path)
            if answer.status_code != 200:
                seen.append(str(answer.status_code))
                break
            seen.append(answer.headers["X-Cache"])
            assert answer.content == warm.content
            assert int(answer.headers["Age"]) <= TTL + MAX_STALE
            time.sleep(0.1)
        assert "STALE" in seen, seen
        assert seen[-1] == "503", seen
        assert set(seen[:-1]) <= {"HIT", "STALE"}
        assert seen[:-1] == sorted(seen[:-1], key=["HIT", "STALE"].index)
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["Retry-After"]) >= 1
        assert metric(client, "portico_cache_lookups_total", outcome="stale") >= 1
    finally:
        for name in ("product-1", "product-2"):
            if name in stack.exited():
                stack.restart(name)
        wait_for(lambda: all(instance_state(client, admin, "product", a)["healthy"]
                             for a in addresses), "the product instances to be back", attempts=600)
    back = client.get(path)
    assert back.status_code == 200 and back.json()["price"] == "6.00"
