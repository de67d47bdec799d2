"""The response cache against a real Redis, on a tiny Starlette app standing in for the
gateway's product routes: hits, validators, invalidation by the services' own signals, single
flight, stale-if-error, and what happens while Redis is stopped."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.policies.cache import CacheMiddleware, CacheRule, cache_key
from services.common.invalidation import CacheSignals

RULES = (
    CacheRule(r"^/products/?$", "product", None),
    CacheRule(r"^/products/(?P<id>[^/]+)/?$", "product", "id"),
)


class Catalogue:
    """The upstream: products by id, a count of calls per path, and switches a test flips."""

    def __init__(self) -> None:
        self.products: dict[str, dict] = {}
        self.calls: Counter[str] = Counter()
        self.status = 200
        self.headers: dict[str, str] = {}
        self.gate: asyncio.Event | None = None
        self.during: Callable[[str], Awaitable[None]] | None = None
        self.fail_once = False

    async def listing(self, request: Request) -> Response:
        self.calls["/products"] += 1
        tag = request.query_params.get("tag")
        return self._answer(sorted(p["id"] for p in self.products.values()
                                   if tag is None or p.get("tag") == tag))

    async def item(self, request: Request) -> Response:
        product_id = request.path_params["id"]
        self.calls[product_id] += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_once:
            self.fail_once = False
            raise RuntimeError("the upstream call blew up")
        product = self.products.get(product_id)
        if self.during is not None:  # A write landing after the read, before the answer.
            await self.during(product_id)
        if product is None:
            return JSONResponse({"detail": "no such product"}, status_code=404)
        return self._answer(product)

    async def user(self, request: Request) -> Response:
        self.calls["user"] += 1
        return JSONResponse({"id": request.path_params["id"]})

    def _answer(self, body: object) -> Response:
        if self.status != 200:
            return JSONResponse({"detail": "unavailable"}, status_code=self.status,
                                headers={"Retry-After": "1"})
        return JSONResponse(body, headers=self.headers)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/products", self.listing),
            Route("/products/{id}", self.item),
            Route("/users/{id}", self.user),
        ])


class Entrances:
    """Counts requests entering the cache and says when `expected` of them are inside (each
    then looks the key up, and leads, waits for the leader, or finds its stored answer)."""

    def __init__(self, app: ASGIApp, expected: int) -> None:
        self.app = app
        self.expected = expected
        self.count = 0
        self.all_inside = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.count += 1
        if self.count == self.expected:
            self.all_inside.set()
        await self.app(scope, receive, send)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
    yield client
    await client.aclose()


@pytest.fixture
async def signals(redis_url: str) -> AsyncIterator[CacheSignals]:
    sender = CacheSignals(redis_url)
    yield sender
    await sender.close()


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue()


def _cache(catalogue: Catalogue, redis_client: Redis, **options: float) -> CacheMiddleware:
    settings = {"ttl": 30.0, "max_stale": 60.0, **options}
    return CacheMiddleware(catalogue.app(), redis=redis_client, rules=RULES, **settings)


def _client(app: ASGIApp, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://portico.test")


def _product(catalogue: Catalogue, name: str = "lamp") -> str:
    product_id = f"P-{uuid.uuid4().hex[:12]}"
    catalogue.products[product_id] = {"id": product_id, "name": name}
    return product_id


def _counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("portico_cache_lookups_total", {"outcome": outcome}) or 0.0


# --- hits, validators, client directives ---------------------------------------------------


async def test_a_miss_then_a_hit_with_age_and_etag(catalogue, redis_client):
    product_id = _product(catalogue)
    hits_before = _counted("hit")
    async with _client(_cache(catalogue, redis_client)) as client:
        miss = await client.get(f"/products/{product_id}")
        hit = await client.get(f"/products/{product_id}")
    assert (miss.status_code, miss.headers["x-cache"]) == (200, "MISS")
    assert miss.headers["cache-control"] == "public, max-age=30"
    assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
    assert hit.json() == miss.json() == {"id": product_id, "name": "lamp"}
    assert hit.headers["etag"] == miss.headers["etag"]
    assert hit.headers["content-type"] == "application/json"
    assert 0 <= int(hit.headers["age"]) <= 30
    assert hit.headers["cache-control"] == f"public, max-age={30 - int(hit.headers['age'])}"
    assert catalogue.calls[product_id] == 1
    assert _counted("hit") == hits_before + 1
    # The entry is in Redis under the normalised key, kept for TTL + max-stale.
    assert 30_000 < await redis_client.pttl(cache_key(f"/products/{product_id}", b"")) <= 90_000


async def test_head_is_answered_from_the_entry_without_a_body(catalogue, redis_client):
    product_id = _product(catalogue)
    async with _client(_cache(catalogue, redis_client)) as client:
        full = await client.get(f"/products/{product_id}")
        head = await client.head(f"/products/{product_id}")
    assert (head.status_code, head.headers["x-cache"], head.content) == (200, "HIT", b"")
    assert int(head.headers["content-length"]) == len(full.content)
    assert head.headers["etag"] == full.headers["etag"]


async def test_if_none_match_gets_304_without_a_body(catalogue, redis_client, signals):
    product_id = _product(catalogue)
    async with _client(_cache(catalogue, redis_client)) as client:
        etag = (await client.get(f"/products/{product_id}")).headers["etag"]
        answers = [await client.get(f"/products/{product_id}", headers={"If-None-Match": tag})
                   for tag in (etag, f"W/{etag}", f'"other", {etag}', "*", '"other"')]
        # The ETag follows the body: refetched after a signal, unchanged data still matches.
        await signals.changed("product", product_id)
        refetched = await client.get(f"/products/{product_id}", headers={"If-None-Match": etag})
    assert [a.status_code for a in answers] == [304, 304, 304, 304, 200]
    for answer in answers[:4]:
        assert answer.content == b""
        assert answer.headers["etag"] == etag
        assert answer.headers["x-cache"] == "HIT"
    assert answers[4].json()["id"] == product_id
    assert (refetched.status_code, refetched.headers["x-cache"]) == (304, "MISS")
    assert catalogue.calls[product_id] == 2


@pytest.mark.parametrize("directive", [
    {"Cache-Control": "no-cache"}, {"Pragma": "no-cache"}, {"Cache-Control": "max-age=0"}])
async def test_a_client_asking_for_no_cache_gets_fresh_data_and_refreshes(
        catalogue, redis_client, directive):
    product_id = _product(catalogue, "v1")
    async with _client(_cache(catalogue, redis_client)) as client:
        await client.get(f"/products/{product_id}")
        # A change the cache was not told about: only a client's no-cache sees it early.
        catalogue.products[product_id]["name"] = "v2"
        cached = await client.get(f"/products/{product_id}")
        fresh = await client.get(f"/products/{product_id}", headers=directive)
        after = await client.get(f"/products/{product_id}")
    assert (cached.headers["x-cache"], cached.json()["name"]) == ("HIT", "v1")
    assert (fresh.headers["x-cache"], fresh.json()["name"]) == ("MISS", "v2")
    assert (after.headers["x-cache"], after.json()["name"]) == ("HIT", "v2")


async def test_no_store_from_a_client_fetches_fresh_and_stores_nothing(catalogue, redis_client):
    product_id = _product(catalogue, "v1")
    async with _client(_cache(catalogue, redis_client)) as client:
        await client.get(f"/products/{product_id}")
        catalogue.products[product_id]["name"] = "v2"
        fresh = await client.get(f"/products/{product_id}", headers={"Cache-Control": "no-store"})
        after = await client.get(f"/products/{product_id}")
    assert (fresh.headers["x-cache"], fresh.json()["name"]) == ("MISS", "v2")
    assert (after.headers["x-cache"], after.json()["name"]) == ("HIT", "v1")


async def test_equal_queries_in_another_order_share_one_entry(catalogue, redis_client):
    tag = uuid.uuid4().hex
    catalogue.products["A"] = {"id": "A", "tag": tag}
    async with _client(_cache(catalogue, redis_client)) as client:
        first = await client.get(f"/products?tag={tag}&page_size=5")
        second = await client.get(f"/products/?page_size=5&tag={tag}")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.json() == ["A"]


# --- never stale after a write --------------------------------------------------------------


async def test_a_write_signal_makes_the_next_get_show_the_new_data(
        catalogue, redis_client, signals):
    product_id = _product(catalogue, "v1")
    tag = uuid.uuid4().hex
    catalogue.products[product_id]["tag"] = tag
    async with _client(_cache(catalogue, redis_client)) as client:
        await client.get(f"/products/{product_id}")
        await client.get(f"/products?tag={tag}")
        other = _product(catalogue)
        catalogue.products[other]["tag"] = tag
        catalogue.products[product_id]["name"] = "v2"
        await signals.changed("product", product_id, other)  # As the service does on a write.
        item = await client.get(f"/products/{product_id}")
        listing = await client.get(f"/products?tag={tag}")
        again = await client.get(f"/products/{product_id}")
    assert (item.headers["x-cache"], item.json()["name"]) == ("MISS", "v2")
    assert (listing.headers["x-cache"], listing.json()) == ("MISS", sorted([product_id, other]))
    assert (again.headers["x-cache"], again.json()["name"]) == ("HIT", "v2")


async def test_a_write_during_the_upstream_call_leaves_nothing_to_serve(
        catalogue, redis_client, signals):
    product_id = _product(catalogue, "v1")

    async def write_after_the_read(changed_id: str) -> None:
        catalogue.during = None
        catalogue.products[changed_id] = {**catalogue.products[changed_id], "name": "v2"}
        await signals.changed("product", changed_id)

    catalogue.during = write_after_the_read
    async with _client(_cache(catalogue, redis_client)) as client:
        raced = await client.get(f"/products/{product_id}")
        after = await client.get(f"/products/{product_id}")
        again = await client.get(f"/products/{product_id}")
    assert (raced.headers["x-cache"], raced.json()["name"]) == ("MISS", "v1")
    assert (after.headers["x-cache"], after.json()["name"]) == ("MISS", "v2")
    assert (again.headers["x-cache"], again.json()["name"]) == ("HIT", "v2")
    assert catalogue.calls[product_id] == 2


# --- single flight ----------------------------------------------------------------------------


async def test_fifty_concurrent_misses_make_one_upstream_call(catalogue, redis_client):
    product_id = _product(catalogue)
    catalogue.gate = asyncio.Event()
    entrances = Entrances(_cache(catalogue, redis_client), expected=50)
    async with _client(entrances) as client:
        requests = [asyncio.create_task(client.get(f"/products/{product_id}"))
                    for _ in range(50)]
        await entrances.all_inside.wait()
        catalogue.gate.set()
        answers = await asyncio.gather(*requests)
        later = await client.get(f"/products/{product_id}")
    # The fill is written behind: requests that looked before it landed shared the answer too.
    assert catalogue.calls[product_id] == 1
    assert later.headers["x-cache"] == "HIT"
    assert {a.status_code for a in answers} == {200}
    assert {a.headers["x-cache"] for a in answers} == {"MISS"}
    assert {a.content for a in answers} == {answers[0].content}
    assert len({a.headers["etag"] for a in answers}) == 1


async def test_a_request_after_a_write_does_not_share_an_answer_read_before_it(
        catalogue, redis_client, signals):
    """Single flight shares an answer only with requests that saw the same generations: one
    that started after a write was acknowledged makes its own call."""
    product_id = _product(catalogue, "v1")
    path = f"/products/{product_id}"
    read_done, release = asyncio.Event(), asyncio.Event()

    async def hold_after_the_read(_: str) -> None:
        catalogue.during = None
        read_done.set()
        await release.wait()

    catalogue.during = hold_after_the_read
    async with _client(_cache(catalogue, redis_client)) as client:
        first = asyncio.create_task(client.get(path))
        await read_done.wait()  # the first call has read v1 and holds its answer
        catalogue.products[product_id] = {**catalogue.products[product_id], "name": "v2"}
        await signals.changed("product", product_id)  # the write is acknowledged
        second = await asyncio.wait_for(client.get(path), timeout=5)
        release.set()
        first_answer = await first
    assert (second.headers["x-cache"], second.json()["name"]) == ("MISS", "v2")
    assert first_answer.json()["name"] == "v1"
    assert catalogue.calls[product_id] == 2


async def test_waiters_do_not_hang_when_the_leader_fails(catalogue, redis_client):
    product_id = _product(catalogue)
    catalogue.gate, catalogue.fail_once = asyncio.Event(), True
    entrances = Entrances(_cache(catalogue, redis_client), expected=5)
    async with _client(entrances, raise_app_exceptions=False) as client:
        requests = [asyncio.create_task(client.get(f"/products/{product_id}"))
                    for _ in range(5)]
        await entrances.all_inside.wait()
        catalogue.gate.set()
        answers = await asyncio.gather(*requests)
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 500]
    assert catalogue.calls[product_id] == 2  # The failed leader's, then one for the rest.


async def test_waiters_do_not_hang_when_the_leader_is_cancelled(catalogue, redis_client):
    product_id = _product(catalogue)
    catalogue.gate = asyncio.Event()
    entrances = Entrances(_cache(catalogue, redis_client), expected=4)
    async with _client(entrances) as client:
        requests = [asyncio.create_task(client.get(f"/products/{product_id}"))
                    for _ in range(4)]
        await entrances.all_inside.wait()
        while catalogue.calls[product_id] == 0:  # The leader is inside the upstream call.
            await asyncio.sleep(0.001)
        requests[0].cancel()  # Tasks start in order: the first one leads.
        catalogue.gate.set()
        answers = await asyncio.gather(*requests[1:])
    assert requests[0].cancelled()
    assert [(a.status_code, a.headers["x-cache"]) for a in answers] == [(200, "MISS")] * 3
    assert catalogue.calls[product_id] == 2


@pytest.mark.parametrize("headers", [
    {"Set-Cookie": "session=abc"}, {"Cache-Control": "private"}, {"Cache-Control": "no-store"}])
async def test_answers_meant_for_one_client_are_neither_stored_nor_shared(
        catalogue, redis_client, headers):
    product_id = _product(catalogue)
    catalogue.headers, catalogue.gate = headers, asyncio.Event()
    entrances = Entrances(_cache(catalogue, redis_client), expected=3)
    async with _client(entrances) as client:
        requests = [asyncio.create_task(client.get(f"/products/{product_id}"))
                    for _ in range(3)]
        await entrances.all_inside.wait()
        catalogue.gate.set()
        answers = await asyncio.gather(*requests)
        later = await client.get(f"/products/{product_id}")
    assert {(a.status_code, a.headers["x-cache"]) for a in answers} == {(200, "MISS")}
    assert all(a.headers.get(name) == value for a in answers for name, value in headers.items())
    assert later.headers["x-cache"] == "MISS"
    assert catalogue.calls[product_id] == 4  # Every waiter asked for its own answer.


# --- stale-if-error ---------------------------------------------------------------------------


async def test_an_unavailable_upstream_gets_the_stale_copy(catalogue, redis_client):
    product_id = _product(catalogue)
    async with _client(_cache(catalogue, redis_client, ttl=0.3, max_stale=1.0)) as client:
        filled = await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.4)  # Past the TTL, within TTL + max-stale.
        catalogue.status = 503
        stale = await client.get(f"/products/{product_id}")
    assert (stale.status_code, stale.headers["x-cache"]) == (200, "STALE")
    assert stale.json() == filled.json()
    assert stale.headers["etag"] == filled.headers["etag"]
    assert int(stale.headers["age"]) >= 0
    assert stale.headers["cache-control"] == "public, max-age=0"
    assert catalogue.calls[product_id] == 2


async def test_past_max_stale_the_503_goes_through(catalogue, redis_client):
    product_id = _product(catalogue)
    async with _client(_cache(catalogue, redis_client, ttl=0.2, max_stale=0.2)) as client:
        await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.5)
        catalogue.status = 503
        failed = await client.get(f"/products/{product_id}")
    assert (failed.status_code, failed.headers["x-cache"]) == (503, "MISS")
    assert failed.headers["retry-after"] == "1"


async def test_a_copy_known_to_be_out_of_date_is_never_served_stale(
        catalogue, redis_client, signals):
    product_id = _product(catalogue)
    async with _client(_cache(catalogue, redis_client)) as client:
        await client.get(f"/products/{product_id}")
        await signals.changed("product", product_id)
        catalogue.status = 503
        failed = await client.get(f"/products/{product_id}")
        catalogue.status = 500  # Not an unavailable upstream: no stale copy either.
        broken = await client.get(f"/products/{product_id}")
    assert (failed.status_code, failed.headers["x-cache"]) == (503, "MISS")
    assert broken.status_code == 500


# --- what is never cached ----------------------------------------------------------------------


async def test_non_200_answers_are_not_stored(catalogue, redis_client):
    missing = f"P-{uuid.uuid4().hex}"
    async with _client(_cache(catalogue, redis_client)) as client:
        answers = [await client.get(f"/products/{missing}") for _ in range(2)]
    assert [(a.status_code, a.headers["x-cache"]) for a in answers] == [(404, "MISS")] * 2
    assert "etag" not in answers[1].headers
    assert catalogue.calls[missing] == 2
    assert await redis_client.exists(cache_key(f"/products/{missing}", b"")) == 0


async def test_routes_without_a_rule_and_writes_pass_through(catalogue, redis_client):
    async with _client(_cache(catalogue, redis_client)) as client:
        users = [await client.get("/users/u1") for _ in range(2)]
        post = await client.post("/products", json={})
    assert [u.status_code for u in users] == [200, 200]
    assert all("x-cache" not in u.headers and "etag" not in u.headers for u in users)
    assert catalogue.calls["user"] == 2
    assert (post.status_code, "x-cache" in post.headers) == (405, False)


# --- Redis down ---------------------------------------------------------------------------------


class StepClock:
    """The cache's backoff clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_redis_down_bypasses_the_cache_then_it_resumes(
        catalogue, redis_client, redis_server, caplog):
    product_id = _product(catalogue)
    clock = StepClock()
    errors = "portico_redis_errors_total"
    errors_before = REGISTRY.get_sample_value(errors, {"concern": "cache"}) or 0.0
    cache = _cache(catalogue, redis_client, backoff=1.0, clock=clock)
    caplog.set_level(logging.INFO, logger="portico.gateway.policies.cache")
    async with _client(cache) as client:
        await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.05)  # its fill, written behind, has gone out
        redis_server.stop()
        try:
            failing = await client.get(f"/products/{product_id}")  # Finds Redis gone.
            during = [await client.get(f"/products/{product_id}") for _ in range(3)]
            clock.now += 1.5  # Past the backoff: Redis is tried again, and is still down.
            retried = await client.get(f"/products/{product_id}")
        finally:
            redis_server.start()
        clock.now += 1.5
        resumed = [await client.get(f"/products/{product_id}") for _ in range(2)]
    for answer in (failing, *during, retried):
        assert answer.status_code == 200
        assert answer.json()["id"] == product_id
        assert "x-cache" not in answer.headers
    assert catalogue.calls[product_id] == 1 + 5 + 1
    # One error per Redis attempt: none while backing off.
    assert REGISTRY.get_sample_value(errors, {"concern": "cache"}) == errors_before + 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert [a.headers["x-cache"] for a in resumed] == ["MISS", "HIT"]
    assert any("resumed" in r.getMessage() for r in caplog.records)
