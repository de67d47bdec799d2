"""Resilience through the real stack, on a private one since these tests kill instances:
round-robin, failover under load with zero failed reads, breakers that open and close again,
client errors that never open one, retried POSTs only with an Idempotency-Key (and then one
order), and an immediate 503 when no instance of a service is left."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
import pytest

from scripts.devstack.stack import Stack
from tests.e2e.conftest import PASSWORD, Account, login, redis_db
from tests.e2e.cutting_proxy import CuttingProxy
from tests.e2e.helpers import (
    NO_CACHE,
    create_product,
    instance_state,
    metric,
    private_stack,
    upstream_calls,
    wait_for,
)

SETTINGS = {
    "PORTICO_BREAKER_FAILURE_THRESHOLD": "3",
    "PORTICO_BREAKER_RESET_TIMEOUT_SECONDS": "1",
    "PORTICO_HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory, pg_url, redis_url, mongo_uri):
    yield from private_stack(tmp_path_factory.mktemp("resilience"), pg_url=pg_url,
                             redis_url=redis_db(redis_url, 5), mongo_uri=mongo_uri,
                             env=SETTINGS)


def _healthy(client: httpx.Client, admin: Account, service: str, address: str) -> bool:
    return instance_state(client, admin, service, address)["healthy"] is True


def _restart(stack: Stack, client: httpx.Client, admin: Account, name: str) -> None:
    service, number = name.rsplit("-", 1)
    address = stack.addresses[service][int(number) - 1]
    if name in stack.exited():
        stack.restart(name)
    wait_for(lambda: _healthy(client, admin, service, address), f"{name} to be healthy",
             attempts=600)


def _through(proxy: CuttingProxy, client: httpx.Client, admin: Account, service: str,
             address: str) -> None:
    """Waits until the gateway has a health answer through the proxy given after its last cut
    (its health watch is then the call begun since the cut, and will not be the next one)."""
    wait_for(lambda: proxy.calls_since_cut > 0 and _healthy(client, admin, service, address),
             f"the gateway to reach {address} through the proxy")


def _customer(client: httpx.Client) -> Account:
    email = f"resilience-{uuid.uuid4().hex[:8]}@example.com"
    created = client.post("/users", json={"name": "R", "email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    return Account(created.json()["id"], email, login(client, email, PASSWORD))


# -- round robin -------------------------------------------------------------------------------
def test_round_robin_alternates_between_the_instances(edge) -> None:
    stack, client, admin = edge
    product = create_product(client, admin)
    addresses = stack.addresses["product"]
    before = [upstream_calls(client, "product", instance=a, code="OK") for a in addresses]
    for _ in range(20):
        answer = client.get(f"/products/{product['id']}", headers=NO_CACHE)
        assert answer.status_code == 200
    after = [upstream_calls(client, "product", instance=a, code="OK") for a in addresses]
    assert [b - a for a, b in zip(before, after, strict=True)] == [10, 10]


# -- client errors -----------------------------------------------------------------------------
def test_404s_and_400s_never_open_a_breaker(edge) -> None:
    stack, client, admin = edge
    product = create_product(client, admin)
    opened = metric(client, "portico_breaker_transitions_total", service="product", state="open")
    not_found = upstream_calls(client, "product", code="NOT_FOUND")
    invalid = upstream_calls(client, "product", code="INVALID_ARGUMENT")
    for i in range(100):
        assert client.get(f"/products/missing-{i}", headers=NO_CACHE).status_code == 404
    for _ in range(50):
        # Fine at the edge, refused by the service (control character in the name).
        answer = client.put(f"/products/{product['id']}", json={"name": "bad\u0007name"},
                            headers=admin.headers)
        assert answer.status_code == 400, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["name"]
    assert upstream_calls(client, "product", code="NOT_FOUND") - not_found == 100
    assert upstream_calls(client, "product", code="INVALID_ARGUMENT") - invalid == 50
    states = client.get("/admin/upstreams", headers=admin.headers).json()["product"]
    assert [i["breaker"] for i in states] == ["closed", "closed"]
    assert metric(client, "portico_breaker_transitions_total", service="product",
                  state="open") == opened
    assert client.get(f"/products/{product['id']}").status_code == 200


# -- failover ----------------------------------------------------------------------------------
async def _steady_reads(stack: Stack, path: str, *, total: int, clients: int,
                        kill_after: int, victim: str) -> Counter[int]:
    """`total` no-cache reads from `clients` concurrent clients; `victim` is killed (-9) once
    `kill_after` of them have been answered."""
    statuses: Counter[int] = Counter()
    remaining = total
    killed = asyncio.Event()

    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http:
        async def client_loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                answer = await http.get(path, headers=NO_CACHE)
                statuses[answer.status_code] += 1
                if sum(statuses.values()) >= kill_after and not killed.is_set():
                    killed.set()
                    await asyncio.to_thread(stack.kill, victim)

        await asyncio.gather(*(client_loop() for _ in range(clients)))
    assert killed.is_set()
    return statuses


async def test_killing_an_instance_under_load_fails_no_read(edge) -> None:
    stack, client, admin = edge
    product = create_product(client, admin)
    path = f"/products/{product['id']}"
    victim = stack.addresses["product"][0]
    try:
        statuses = await _steady_reads(stack, path, total=300, clients=4, kill_after=60,
                                       victim="product-1")
        assert statuses == Counter({200: 300})
        state = instance_state(client, admin, "product", victim)
        assert state["healthy"] is False or state["breaker"] == "open", state
        assert (metric(client, "portico_upstream_healthy", service="product",
                       instance=victim) == 0
                or metric(client, "portico_breaker_state", service="product",
                          instance=victim) == 2)
    finally:
        _restart(stack, client, admin, "product-1")

    before = upstream_calls(client, "product", instance=victim, code="OK")

    def serves_again() -> bool:
        assert client.get(path, headers=NO_CACHE).status_code == 200
        return (upstream_calls(client, "product", instance=victim, code="OK") > before
                and instance_state(client, admin, "product", victim)["breaker"] == "closed")

    wait_for(serves_again, "the restarted instance to take traffic with a closed breaker",
             attempts=100)


def test_a_breaker_opens_on_failures_and_closes_after_restart(edge) -> None:
    """An instance that fails calls while its health checks still pass: three UNAVAILABLE in a
    row open its breaker (the reads themselves are retried onto the other instance); once
    the instance is restarted, a trial call closes the breaker again."""
    stack, client, admin = edge
    product = create_product(client, admin)
    path = f"/products/{product['id']}"
    victim = stack.addresses["product"][1]

    def transitions(state: str) -> float:
        return metric(client, "portico_breaker_transitions_total", service="product",
                      instance=victim, state=state)

    opened, closed = transitions("open"), transitions("closed")
    proxy = CuttingProxy.take_over(stack, "product-2")
    try:
        for _ in range(3):
            _through(proxy, client, admin, "product", victim)
            cuts = proxy.cuts
            proxy.arm()
            for _ in range(4):
                assert client.get(path, headers=NO_CACHE).status_code == 200
                if proxy.cuts > cuts:
                    break
            assert proxy.cuts == cuts + 1
        assert transitions("open") == opened + 1
    finally:
        proxy.close()
    _restart(stack, client, admin, "product-2")
    before = upstream_calls(client, "product", instance=victim, code="OK")

    def closed_again() -> bool:
        assert client.get(path, headers=NO_CACHE).status_code == 200
        return instance_state(client, admin, "product", victim)["breaker"] == "closed"

    wait_for(closed_again, "the breaker to close again", attempts=100)
    assert transitions("closed") == closed + 1
    assert upstream_calls(client, "product", instance=victim, code="OK") > before


# -- retried POSTs -----------------------------------------------------------------------------
def _place(client: httpx.Client, customer: Account, product: dict,
           key: str | None = None) -> httpx.Response:
    headers = {**customer.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post("/orders", json={"items": [{"product_id": product["id"], "quantity": 1}],
                                        "payment": {"token": "tok_visa"}}, headers=headers)


def _orders_of(client: httpx.Client, customer: Account) -> list[str]:
    answer = client.get("/orders", params={"limit": 100}, headers=customer.headers)
    assert answer.status_code == 200, answer.text
    return [order["id"] for order in answer.json()]


def _place_until_cut(client: httpx.Client, proxy: CuttingProxy, customer: Account,
                     product: dict, *, keyed: bool) -> list[tuple[str | None, httpx.Response]]:
    """Places orders (each with a new key, or none) until one starts on the cut instance."""
    cuts = proxy.cuts
    proxy.arm()
    placed = []
    for _ in range(4):
        key = uuid.uuid4().hex if keyed else None
        placed.append((key, _place(client, customer, product, key)))
        if proxy.cuts > cuts:
            return placed
    raise AssertionError("no order call went to the armed instance")


def test_a_post_is_retried_only_with_an_idempotency_key_and_makes_one_order(edge) -> None:
    stack, client, admin = edge
    customer = _customer(client)
    product = create_product(client, admin, price="1.00", stock=100)
    victim = stack.addresses["order"][1]

    def retries() -> float:
        return metric(client, "portico_upstream_retries_total", service="order")

    def failed_calls() -> float:
        return upstream_calls(client, "order", instance=victim, code="UNAVAILABLE")

    proxy = CuttingProxy.take_over(stack, "order-2")
    try:
        # Without a key: the call that met the dead instance fails; nothing is repeated.
        _through(proxy, client, admin, "order", victim)
        retried, failed = retries(), failed_calls()
        placed = _place_until_cut(client, proxy, customer, product, keyed=False)
        statuses = [answer.status_code for _, answer in placed]
        assert statuses[:-1] == [201] * (len(placed) - 1) and statuses[-1] == 503, statuses
        refused = placed[-1][1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        assert (retries(), failed_calls()) == (retried, failed + 1)
        assert len(_orders_of(client, customer)) == len(placed) - 1

        # With a key: retried on the live instance, one order; the key replays that order.
        _through(proxy, client, admin, "order", victim)
        before = _orders_of(client, customer)
        retried, failed = retries(), failed_calls()
        placed = _place_until_cut(client, proxy, customer, product, keyed=True)
        assert [answer.status_code for _, answer in placed] == [201] * len(placed)
        assert (retries(), failed_calls()) == (retried + 1, failed + 1)
        after = _orders_of(client, customer)
        assert len(after) == len(before) + len(placed)
        key, answer = placed[-1]
        again = _place(client, customer, product, key)
        assert again.status_code == 201 and again.json()["id"] == answer.json()["id"]
        assert sorted(_orders_of(client, customer)) == sorted(after)
    finally:
        proxy.close()
        _restart(stack, client, admin, "order-2")
    assert client.get(f"/products/{product['id']}").json()["stock"] == 100 - len(after)


# -- no instance left --------------------------------------------------------------------------
def test_with_every_instance_down_the_answer_is_an_immediate_503(edge) -> None:
    stack, client, admin = edge
    product = create_product(client, admin)
    never_read = create_product(client, admin)
    addresses = stack.addresses["product"]
    try:
        stack.kill("product-1")
        stack.kill("product-2")
        wait_for(lambda: not any(_healthy(client, admin, "product", a) for a in addresses),
                 "both product instances to be seen down")
        calls = upstream_calls(client, "product")
        retries = metric(client, "portico_upstream_retries_total", service="product")
        answers = [client.get(f"/products/{product['id']}", headers=NO_CACHE)
                   for _ in range(10)]
        answers.append(client.get(f"/products/{never_read['id']}"))
        answers.append(client.put(f"/products/{product['id']}", json={"price": "2.00"},
                                  headers=admin.headers))
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.json()["code"] == "NO_INSTANCE"
        # Not one call was tried, so nothing waited for an upstream deadline.
        assert upstream_calls(client, "product") == calls
        assert metric(client, "portico_upstream_retries_total", service="product") == retries
    finally:
        for name in ("product-1", "product-2"):
            _restart(stack, client, admin, name)
    assert client.get(f"/products/{product['id']}", headers=NO_CACHE).status_code == 200
