"""The response cache against a real Redis, as a plain object: a stand-in for the gateway's
product routes is its upstream, and a small front does what the edge pipeline does for a
cacheable GET. Hits, validators, invalidation by the services' own signals, single flight,
stale-if-error, and what happens while Redis is stopped."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from gateway.answer import Answer, json_answer
from gateway.policies.cache import ResponseCache, cache_request
from gateway.policies.cache_entry import CacheRule, cache_key
from gateway.policies.redis import RedisLink
from gateway.policies.redis import redis_client as edge_redis_client
from services.common.invalidation import CacheSignals

LIST, ITEM = CacheRule("product"), CacheRule("product", id_field="id")


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

    async def listing(self, query: dict[str, str]) -> Answer:
        self.calls["/products"] += 1
        tag = query.get("tag")
        return self._answer(sorted(p["id"] for p in self.products.values()
                                   if tag is None or p.get("tag") == tag))

    async def item(self, product_id: str) -> Answer:
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
            return json_answer(b'{"detail": "no such product"}', status=404)
        return self._answer(product)

    def _answer(self, body: object) -> Answer:
        if self.status != 200:
            return json_answer(b'{"detail": "unavailable"}', status=self.status,
                               headers=[(b"retry-after", b"1")])
        return json_answer(orjson.dumps(body), headers=[
            (name.lower().encode(), value.encode()) for name, value in self.headers.items()])


class Reply:
    """An answer as a client reads it."""

    def __init__(self, answer: Answer) -> None:
        self.status_code = answer.status
        self.headers = httpx.Headers([(name.decode(), value.decode())
                                      for name, value in answer.headers])
        self.content = answer.body

    def json(self):  # type: ignore[no-untyped-def]
        return orjson.loads(self.content)


class Front:
    """What the edge pipeline does for a cacheable GET, without ASGI: the route's cache
    request from the path, query and headers, then the cache, with the catalogue upstream."""

    def __init__(self, cache: ResponseCache, catalogue: Catalogue) -> None:
        self.cache = cache
        self.catalogue = catalogue
        self.entered = 0
        self.expected = 0
        self.all_inside = asyncio.Event()

    async def get(self, target: str, headers: dict[str, str] | None = None, *,
                  method: str = "GET") -> Reply:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        query = parse_qsl(url.query)
        lower = {name.lower(): value for name, value in (headers or {}).items()}
        parent, _, last = path.rpartition("/")
        rule, params = (ITEM, {"id": last}) if parent == "/products" else (LIST, {})
        request = cache_request(rule, path=path, params=params, query=query,
                                head=method == "HEAD",
                                cache_control=[lower["cache-control"]]
                                if "cache-control" in lower else [],
                                pragma=[lower["pragma"]] if "pragma" in lower else [],
                                if_none_match=lower.get("if-none-match"))
        self.entered += 1
        if self.entered == self.expected:
            self.all_inside.set()

        async def call() -> Answer:
            if rule is ITEM:
                return await self.catalogue.item(last)
            return await self.catalogue.listing(dict(query))

        answer = await self.cache.serve(request, None, call)
        if method == "HEAD":
            answer = Answer(answer.status, answer.headers, b"")
        return Reply(answer)

    async def head(self, target: str) -> Reply:
        return await self.get(target, method="HEAD")

    def expect(self, count: int) -> None:
        """Sets `all_inside` once `count` more requests have entered the cache."""
        self.entered, self.expected = 0, count


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=0.25, socket_connect_timeout=0.25)
    yield client
    await client.aclose()


@pytest.fixture
async def link(redis_url: str) -> AsyncIterator[RedisLink]:
    client = edge_redis_client(redis_url)
    link = RedisLink(client, timeout=0.25)
    yield link
    await link.close()
    await client.aclose()


@pytest.fixture
async def signals(redis_url: str) -> AsyncIterator[CacheSignals]:
    sender = CacheSignals(redis_url)
    yield sender
    await sender.close()


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue()


def _front(catalogue: Catalogue, link: RedisLink, **options: float) -> Front:
    settings = {"ttl": 30.0, "max_stale": 60.0, **options}
    return Front(ResponseCache(link, **settings), catalogue)


def _product(catalogue: Catalogue, name: str = "lamp") -> str:
    product_id = f"P-{uuid.uuid4().hex[:12]}"
    catalogue.products[product_id] = {"id": product_id, "name": name}
    return product_id


def _counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("portico_cache_lookups_total", {"outcome": outcome}) or 0.0


# --- hits, validators, client directives ---------------------------------------------------


async def test_a_miss_then_a_hit_with_age_and_etag(catalogue, link, redis_client):
    product_id = _product(catalogue)
    hits_before = _counted("hit")
    client = _front(catalogue, link)
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
    key = cache_key(f"/products/{product_id}", tag=f"product:{product_id}")
    assert 30_000 < await redis_client.pttl(key) <= 90_000


async def test_head_is_answered_from_the_entry_without_a_body(catalogue, link):
    product_id = _product(catalogue)
    client = _front(catalogue, link)
    full = await client.get(f"/products/{product_id}")
    head = await client.head(f"/products/{product_id}")
    assert (head.status_code, head.headers["x-cache"], head.content) == (200, "HIT", b"")
    assert int(head.headers["content-length"]) == len(full.content)
    assert head.headers["etag"] == full.headers["etag"]


async def test_if_none_match_gets_304_without_a_body(catalogue, link, signals):
    product_id = _product(catalogue)
    client = _front(catalogue, link)
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
        catalogue, link, directive):
    product_id = _product(catalogue, "v1")
    client = _front(catalogue, link)
    await client.get(f"/products/{product_id}")
    # A change the cache was not told about: only a client's no-cache sees it early.
    catalogue.products[product_id]["name"] = "v2"
    cached = await client.get(f"/products/{product_id}")
    fresh = await client.get(f"/products/{product_id}", headers=directive)
    after = await client.get(f"/products/{product_id}")
    assert (cached.headers["x-cache"], cached.json()["name"]) == ("HIT", "v1")
    assert (fresh.headers["x-cache"], fresh.json()["name"]) == ("MISS", "v2")
    assert (after.headers["x-cache"], after.json()["name"]) == ("HIT", "v2")


async def test_no_store_from_a_client_fetches_fresh_and_stores_nothing(catalogue, link):
    product_id = _product(catalogue, "v1")
    client = _front(catalogue, link)
    await client.get(f"/products/{product_id}")
    catalogue.products[product_id]["name"] = "v2"
    fresh = await client.get(f"/products/{product_id}", headers={"Cache-Control": "no-store"})
    after = await client.get(f"/products/{product_id}")
    assert (fresh.headers["x-cache"], fresh.json()["name"]) == ("MISS", "v2")
    assert (after.headers["x-cache"], after.json()["name"]) == ("HIT", "v1")


async def test_equal_queries_in_another_order_share_one_entry(catalogue, link):
    tag = uuid.uuid4().hex
    catalogue.products["A"] = {"id": "A", "tag": tag}
    client = _front(catalogue, link)
    first = await client.get(f"/products?tag={tag}&page_size=5")
    second = await client.get(f"/products/?page_size=5&tag={tag}")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.json() == ["A"]


# --- never stale after a write --------------------------------------------------------------


async def test_a_write_signal_makes_the_next_get_show_the_new_data(
        catalogue, link, signals):
    product_id = _product(catalogue, "v1")
    tag = uuid.uuid4().hex
    catalogue.products[product_id]["tag"] = tag
    client = _front(catalogue, link)
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
        catalogue, link, signals):
    product_id = _product(catalogue, "v1")

    async def write_after_the_read(changed_id: str) -> None:
        catalogue.during = None
        catalogue.products[changed_id] = {**catalogue.products[changed_id], "name": "v2"}
        await signals.changed("product", changed_id)

    catalogue.during = write_after_the_read
    client = _front(catalogue, link)
    raced = await client.get(f"/products/{product_id}")
    after = await client.get(f"/products/{product_id}")
    again = await client.get(f"/products/{product_id}")
    assert (raced.headers["x-cache"], raced.json()["name"]) == ("MISS", "v1")
    assert (after.headers["x-cache"], after.json()["name"]) == ("MISS", "v2")
    assert (again.headers["x-cache"], again.json()["name"]) == ("HIT", "v2")
    assert catalogue.calls[product_id] == 2


# --- single flight ----------------------------------------------------------------------------


async def test_fifty_concurrent_misses_make_one_upstream_call(catalogue, link):
    product_id = _product(catalogue)
    catalogue.gate = asyncio.Event()
    client = _front(catalogue, link)
    client.expect(50)
    requests = [asyncio.create_task(client.get(f"/products/{product_id}"))
                for _ in range(50)]
    await client.all_inside.wait()
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
        catalogue, link, signals):
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
    client = _front(catalogue, link)
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


async def test_waiters_do_not_hang_when_the_leader_fails(catalogue, link):
    product_id = _product(catalogue)
    catalogue.gate, catalogue.fail_once = asyncio.Event(), True
    client = _front(catalogue, link)
    client.expect(5)
    requests = [asyncio.create_task(client.get(f"/products/{product_id}")) for _ in range(5)]
    await client.all_inside.wait()
    catalogue.gate.set()
    answers = await asyncio.gather(*requests, return_exceptions=True)
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert [type(a) for a in failed] == [RuntimeError]  # the pipeline answers it as a 500
    assert [a.status_code for a in answers if a not in failed] == [200] * 4
    assert catalogue.calls[product_id] == 2  # The failed leader's, then one for the rest.


async def test_waiters_do_not_hang_when_the_leader_is_cancelled(catalogue, link):
    product_id = _product(catalogue)
    catalogue.gate = asyncio.Event()
    client = _front(catalogue, link)
    client.expect(4)
    requests = [asyncio.create_task(client.get(f"/products/{product_id}"))
                for _ in range(4)]
    await client.all_inside.wait()
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
        catalogue, link, headers):
    product_id = _product(catalogue)
    catalogue.headers, catalogue.gate = headers, asyncio.Event()
    client = _front(catalogue, link)
    client.expect(3)
    requests = [asyncio.create_task(client.get(f"/products/{product_id}"))
                for _ in range(3)]
    await client.all_inside.wait()
    catalogue.gate.set()
    answers = await asyncio.gather(*requests)
    later = await client.get(f"/products/{product_id}")
    assert {(a.status_code, a.headers["x-cache"]) for a in answers} == {(200, "MISS")}
    assert all(a.headers.get(name) == value for a in answers for name, value in headers.items())
    assert later.headers["x-cache"] == "MISS"
    assert catalogue.calls[product_id] == 4  # Every waiter asked for its own answer.


# --- stale-if-error ---------------------------------------------------------------------------


async def test_an_unavailable_upstream_gets_the_stale_copy(catalogue, link):
    product_id = _product(catalogue)
    client = _front(catalogue, link, ttl=0.3, max_stale=1.0)
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


async def test_past_max_stale_the_503_goes_through(catalogue, link):
    product_id = _product(catalogue)
    client = _front(catalogue, link, ttl=0.2, max_stale=0.2)
    await client.get(f"/products/{product_id}")
    await asyncio.sleep(0.5)
    catalogue.status = 503
    failed = await client.get(f"/products/{product_id}")
    assert (failed.status_code, failed.headers["x-cache"]) == (503, "MISS")
    assert failed.headers["retry-after"] == "1"


async def test_a_copy_known_to_be_out_of_date_is_never_served_stale(
        catalogue, link, signals):
    product_id = _product(catalogue)
    client = _front(catalogue, link)
    await client.get(f"/products/{product_id}")
    await signals.changed("product", product_id)
    catalogue.status = 503
    failed = await client.get(f"/products/{product_id}")
    catalogue.status = 500  # Not an unavailable upstream: no stale copy either.
    broken = await client.get(f"/products/{product_id}")
    assert (failed.status_code, failed.headers["x-cache"]) == (503, "MISS")
    assert broken.status_code == 500


# --- what is never cached ----------------------------------------------------------------------


async def test_non_200_answers_are_not_stored(catalogue, link, redis_client):
    missing = f"P-{uuid.uuid4().hex}"
    client = _front(catalogue, link)
    answers = [await client.get(f"/products/{missing}") for _ in range(2)]
    assert [(a.status_code, a.headers["x-cache"]) for a in answers] == [(404, "MISS")] * 2
    assert "etag" not in answers[1].headers
    assert catalogue.calls[missing] == 2
    key = cache_key(f"/products/{missing}", tag=f"product:{missing}")
    assert await redis_client.exists(key) == 0


# --- Redis down ---------------------------------------------------------------------------------


class StepClock:
    """The Redis link's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_redis_down_bypasses_the_cache_then_it_resumes(
        catalogue, redis_url, redis_server, caplog):
    product_id = _product(catalogue)
    clock = StepClock()
    errors = "portico_redis_errors_total"
    errors_before = REGISTRY.get_sample_value(errors, {"concern": "cache"}) or 0.0
    redis = edge_redis_client(redis_url)
    link = RedisLink(redis, timeout=0.25, retry_interval=1.0, clock=clock)
    client = _front(catalogue, link)
    caplog.set_level(logging.INFO, logger="portico.gateway.redis")
    try:
        await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.05)  # its fill, written behind, has gone out
        redis_server.stop()
        try:
            failing = await client.get(f"/products/{product_id}")  # Finds Redis gone.
            during = [await client.get(f"/products/{product_id}") for _ in range(3)]
            clock.now += 1.5  # Past the retry interval: Redis is tried again, still down.
            retried = await client.get(f"/products/{product_id}")
        finally:
            redis_server.start()
        clock.now += 1.5
        probe = await client.get(f"/products/{product_id}")  # answered: Redis is back
        clock.now += link.settle_seconds  # then entries are served again
        resumed = [await client.get(f"/products/{product_id}") for _ in range(2)]
    finally:
        await link.close()
        await redis.aclose()
    for answer in (failing, *during, retried, probe):
        assert answer.status_code == 200
        assert answer.json()["id"] == product_id
        assert "x-cache" not in answer.headers
    assert catalogue.calls[product_id] == 1 + 6 + 1
    # One error per Redis attempt: none while backing off.
    assert REGISTRY.get_sample_value(errors, {"concern": "cache"}) == errors_before + 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert [a.headers["x-cache"] for a in resumed] == ["MISS", "HIT"]
    assert any("available again" in r.getMessage() for r in caplog.records)


async def test_after_an_outage_no_entry_is_served_until_deferred_signals_can_land(
        catalogue, redis_url, redis_client):
    """A write made while Redis did not answer keeps its signal pending in the service until
    Redis answers again; until then the entries it should end still look current. (Found by
    the multi-host tier: a read right after a Redis Cluster failover got the old stock.) The
    link serves no entry for its settle time after an outage, longer than the services' retry
    interval, so the deferred signals land first."""
    product_id = _product(catalogue, "v1")
    clock = StepClock()
    redis = edge_redis_client(redis_url)
    link = RedisLink(redis, timeout=0.25, retry_interval=1.0, clock=clock)
    client = _front(catalogue, link)
    sender = CacheSignals(redis_url, timeout=0.25, retry_interval=0.5)
    try:
        await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.05)  # its fill, written behind, has gone out
        await redis_client.execute_command("CLIENT", "PAUSE", "700", "ALL")
        catalogue.products[product_id]["name"] = "v2"
        await asyncio.gather(sender.changed("product", product_id),   # deferred: no answer
                             client.get(f"/products/{product_id}"))   # the link goes down
        assert sender.pending == 1
        await asyncio.sleep(0.5)   # the pause is over; the service's retry is still to come
        clock.now += 1.5           # the link's probe is due
        after = await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.6)   # the deferred signal lands
        assert sender.pending == 0
        clock.now += link.settle_seconds
        settled = [await client.get(f"/products/{product_id}") for _ in range(2)]
    finally:
        await sender.close()
        await link.close()
        await redis.aclose()
    assert (after.json()["name"], "x-cache" in after.headers) == ("v2", False)
    assert [(a.headers["x-cache"], a.json()["name"]) for a in settled] == [
        ("MISS", "v2"), ("HIT", "v2")]
