"""What one hostile request can do to the edge pipeline, pushed past every bound: oversized heads
and targets, huge header values for each parser, distinct paths by the hundred, unknown query
parameters, oversized and slow bodies. Every refusal is a problem+json answer with the RateLimit
headers. (Load shedding happens before the pipeline: test_admission.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis.asyncio as redis

from gateway.app import create_app
from portico.product.v1 import product_pb2, product_pb2_grpc
from tests.integration.gateway import rawhttp
from tests.integration.gateway.conftest import (
    SCRAPER,
    gateway_client,
    grpc_server,
    make_token,
    settings_for,
)
from tests.trust import serve, session_state_dir

LIMITED = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


class Products(product_pb2_grpc.ProductServiceServicer):
    """Answers at once."""

    def __init__(self) -> None:
        self.calls = 0

    async def GetProduct(self, request, context):
        self.calls += 1
        if request.id == "GONE":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such product")
        return product_pb2.GetProductResponse(product=product_pb2.Product(
            id=request.id, name="Limits", price="1.00", stock=1))

    async def ListProducts(self, request, context):
        self.calls += 1
        return product_pb2.ListProductsResponse()

    async def CreateProduct(self, request, context):
        self.calls += 1
        return product_pb2.CreateProductResponse(product=product_pb2.Product(
            id="P9", name=request.name, price=request.price))


@pytest.fixture(scope="module")
async def products():
    servicer = Products()
    async with grpc_server((product_pb2_grpc.add_ProductServiceServicer_to_server, servicer,
                            "portico.product.v1.ProductService")) as address:
        yield servicer, address


def _gateway(products, signing_key, redis_url, **overrides):  # type: ignore[no-untyped-def]
    settings = {"rate_limit_rate": 1000.0, "rate_limit_burst": 100_000, **overrides}
    return gateway_client(settings_for(products[1], signing_key, redis_url, **settings))


def _refused(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == status and answer.json()["request_id"]
    assert all(name in answer.headers for name in LIMITED), dict(answer.headers)


async def test_heads_past_their_bounds_are_refused_with_ratelimit_headers(
        products, signing_key, redis_url) -> None:
    async with _gateway(products, signing_key, redis_url) as client:
        _refused(await client.get("/products/P1", headers={"X-Big": "a" * 17_000}), 431)
        _refused(await client.get("/products/" + "p" * 9_000), 414)
        _refused(await client.get("/products?name=" + "n" * 9_000), 414)
        # Just under the bounds: served.
        assert (await client.get("/products/P1", headers={"X-Big": "a" * 15_000})).status_code \
            == 200


async def test_refusals_of_the_body_carry_ratelimit_headers(
        products, signing_key, redis_url) -> None:
    admin = {"Authorization": f"Bearer {make_token(signing_key[0], 'a1', 'admin')}"}

    async def chunked():  # no Content-Length: the size is only known while reading
        for _ in range(100):
            yield b"x" * 1024

    async with _gateway(products, signing_key, redis_url) as client:
        _refused(await client.post("/products", content=chunked(),
                                   headers={**admin, "Content-Type": "application/json"}), 413)
        _refused(await client.post("/products", content=b"{}" * 40_000,
                                   headers={**admin, "Content-Type": "application/json"}), 413)
        _refused(await client.post("/products", content=b"name=x",
                                   headers={**admin, "Content-Type": "text/plain"}), 415)
        _refused(await client.post("/products", content=b"{}", headers={
            **admin, "Content-Type": "application/json", "Content-Length": "two"}), 400)


async def test_a_body_that_does_not_arrive_in_time_is_408(
        products, signing_key, redis_url) -> None:
    admin = {"Authorization": f"Bearer {make_token(signing_key[0], 'a1', 'admin')}"}

    async def slow():
        yield b'{"name": '
        await asyncio.sleep(2)
        yield b'"x", "price": "1.00"}'

    async with _gateway(products, signing_key, redis_url, body_timeout_seconds=0.3) as client:
        answer = await client.post("/products", content=slow(),
                                   headers={**admin, "Content-Type": "application/json"})
    _refused(answer, 408)


@pytest.mark.parametrize(("header", "value", "status"), [
    ("If-None-Match", '"' + " " * 65_536 + '"', 200),    # froze the old ETag regex for 23 s
    ("If-None-Match", ", ".join(['W/"x"'] * 9_000), 200),
    ("Authorization", "Bearer " + "a" * 65_536, 401),
    ("Authorization", "Bearer " + "a." * 32_768, 401),
    ("X-Forwarded-For", ", ".join(["10.0.0.9"] * 6_000), 200),
    ("X-Forwarded-For", "1.2.3.4" + " " * 65_536, 200),
    ("Cache-Control", ", ".join(["no-transform"] * 6_000), 200),
    ("Cache-Control", "max-age=" + "9" * 65_536, 200),
])
async def test_every_header_parser_is_linear(products, signing_key, redis_url, header, value,
                                             status) -> None:
    """64 KiB values, with the head limit raised so that they reach the parsers. A correctness
    bound, not a speed figure: a quadratic parser takes minutes here."""
    async with _gateway(products, signing_key, redis_url, max_header_bytes=256 * 1024,
                        trusted_proxies=["10.0.0.0/8", "203.0.113.0/24"]) as client:
        started = time.monotonic()
        answer = await client.get("/products/P1", headers={header: value})
        elapsed = time.monotonic() - started
    assert answer.status_code == status
    assert elapsed < 5, f"{header}: {elapsed:.1f} s"


async def _get(app, path: str) -> int:  # type: ignore[no-untyped-def]
    """One GET straight into the ASGI app, with a scope the test made (so that every byte of
    the path is the test's own, and only the gateway can keep it)."""
    status = 0

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        status = message.get("status", status)

    await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
               "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
               "query_string": b"", "root_path": "", "headers": [(b"host", b"gateway")],
               "client": ("203.0.113.9", 40000), "server": ("gateway", 80)}, receive, send)
    return status


async def test_paths_that_match_no_route_cost_no_memory(products, signing_key, redis_url) -> None:
    app = create_app(settings_for(products[1], signing_key, redis_url, rate_limit_enabled=False))
    async with app.router.lifespan_context(app):
        for index in range(50):  # warm what the first requests fill (metrics children)
            assert await _get(app, f"/warm-{index}-" + "w" * 6_000) == 404
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(300):
                assert await _get(app, f"/{uuid.uuid4().hex}-" + "z" * 6_000) == 404
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    # 300 paths of 6 KB are 1.8 MB: none of them may stay.
    assert grown < 300_000, grown


async def test_unknown_or_repeated_query_parameters_are_refused_and_never_keyed(
        products, signing_key, redis_url) -> None:
    observer = redis.Redis.from_url(redis_url)
    try:
        async with _gateway(products, signing_key, redis_url) as client:
            before = await observer.dbsize()
            answers = [await client.get(f"/products?junk{i}={i}") for i in range(20)]
            answers += [await client.get("/products?limit=5&limit=6"),
                        await client.get("/products/P1?unused=1"),
                        await client.get("/products?" + "&".join(f"a{i}=1" for i in range(40)))]
            for answer in answers:
                _refused(answer, 400)
            assert answers[0].json()["errors"][0]["field"] == "query"
            # Equal queries written differently share one entry.
            first = await client.get("/products?limit=05&name=x")
            second = await client.get("/products?name=x&limit=5")
            assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
            await asyncio.sleep(0.05)  # fills are written behind
            # Only the rate limiter's bucket and that one entry were added.
            assert await observer.dbsize() <= before + 2
    finally:
        await observer.aclose()


async def test_protocol_upgrades_are_not_offered(products, signing_key, redis_url) -> None:
    """Behind a real server: a WebSocket (or any) upgrade is answered as the plain request it
    also is, and one whose body the parser would hand to the upgraded protocol is refused."""
    app = create_app(settings_for(products[1], signing_key, redis_url,
                                  rate_limit_rate=1000.0, rate_limit_burst=100_000))
    admin = f"Bearer {make_token(signing_key[0], 'a1', 'admin')}"
    upgrade = ("Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    asks = [f"GET /products/P1 HTTP/1.1\r\nHost: gateway\r\n{upgrade}\r\n",
            f"POST /products HTTP/1.1\r\nHost: gateway\r\n{upgrade}Authorization: {admin}\r\n"
            'Content-Type: application/json\r\nContent-Length: 13\r\n\r\n{"name": "x"}']

    def ask_each() -> list[tuple[int, dict, dict]]:
        answers = []
        with rawhttp.serve(app=app, lifespan="on") as served:
            for head in asks:
                with rawhttp.connect(served) as sock:
                    sock.sendall(head.encode())
                    status, headers, body = rawhttp.read_response(sock.makefile("rb"))
                    assert rawhttp.closed(sock)
                answers.append((status, {k.decode(): v.decode() for k, v in headers.items()},
                                body))
        return answers

    (got, _, product), (refused, headers, problem) = await asyncio.to_thread(ask_each)
    assert (got, product["id"]) == (200, "P1")
    assert (refused, problem["code"]) == (400, "BAD_REQUEST"), problem
    assert headers["content-type"] == "application/problem+json"
    assert all(name in headers for name in LIMITED), headers
    assert products[0].calls >= 1


UNREADABLE_BODIES = {
    "not JSON": (b'{"name": ', "not valid JSON"),
    "not UTF-8": (b'{"name": "\xff\xfe"}', "not UTF-8"),
    "a number of 5,000 digits": (b'{"name": "x", "stock": ' + b"9" * 5_000 + b"}", "digits"),
    "nested 5,000 deep": (b'{"name": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "nests"),
}


@pytest.mark.parametrize("body,says", UNREADABLE_BODIES.values(), ids=UNREADABLE_BODIES.keys())
async def test_a_body_that_cannot_be_read_as_json_is_malformed_json(
        products, signing_key, redis_url, body, says) -> None:
    admin = {"Authorization": f"Bearer {make_token(signing_key[0], 'a1', 'admin')}",
             "Content-Type": "application/json"}
    async with _gateway(products, signing_key, redis_url) as client:
        answer = await client.post("/products", content=body, headers=admin)
    _refused(answer, 400)
    assert answer.json()["code"] == "MALFORMED_JSON", answer.text
    assert says in answer.json()["detail"], answer.text


async def test_metrics_are_read_only_from_the_deployments_networks(
        products, signing_key, redis_url) -> None:
    """/metrics is neither rate limited nor shed and shows the upstreams' addresses: a client
    outside `metrics_networks` gets the 404 of a path that does not exist."""
    async def scrape(forwarded: str | None = None, **overrides) -> httpx.Response:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        async with _gateway(products, signing_key, redis_url, **overrides) as client:
            return await client.get("/metrics", headers=headers)

    refused = await scrape()  # the tests' client is on the internet (203.0.113.9)
    assert refused.status_code == 404, refused.text
    assert refused.json()["detail"] == "there is no /metrics"
    assert "portico_" not in refused.text
    # Naming itself a scraper is not believed from a peer that is not a trusted proxy.
    assert (await scrape("10.0.0.7")).status_code == 404
    # Behind a trusted proxy, the address it forwarded counts.
    proxied = {"trusted_proxies": ["203.0.113.0/24"]}
    assert (await scrape("10.0.0.7", **proxied)).status_code == 200
    assert (await scrape("198.51.100.7", **proxied)).status_code == 404
    allowed = await scrape(metrics_networks=[SCRAPER])
    assert allowed.status_code == 200 and "portico_http_requests_total" in allowed.text



def _serve_products(conn: Any, state_dir: Path) -> None:
    """Products' test double in a process of its own (its gRPC server's own garbage apart), with
    the session's CA in `state_dir`: sends its port down `conn`, serves until told to stop."""
    async def main() -> None:
        running = await serve([(product_pb2_grpc.add_ProductServiceServicer_to_server,
                                Products(), "portico.product.v1.ProductService")],
                              state_dir=state_dir)
        conn.send(running.port)
        await asyncio.to_thread(conn.recv)
        await running.stop(0)

    asyncio.run(main())


async def test_requests_leave_no_garbage_for_the_collector(signing_key, redis_url) -> None:
    """Behind a real server, each request's objects are freed as it ends rather than left in
    reference cycles: at 10,000 requests a second such cycles made the collector walk tens of
    thousands of objects every few seconds, a pause of some 20 ms that was a cached GET's p99."""
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    products = multiprocessing.get_context("spawn").Process(target=_serve_products,
                                                            args=(theirs, session_state_dir()),
                                                            daemon=True)
    products.start()
    try:
        assert ours.poll(60), "the products' server did not start"
        address = f"127.0.0.1:{ours.recv()}"
        found, statuses, asked = await _garbage_after_requests(address, signing_key, redis_url)
    finally:
        with contextlib.suppress(OSError):  # it may have died already
            ours.send("stop")
        products.join(10)
        if products.is_alive():
            products.kill()
    assert statuses == {200, 201, 400, 401, 404}, statuses
    # Before: 11 objects a request for each answer (the server's cycle, its scope and the
    # edge's context), some 50 for a 401 and 80 for a body that is not JSON (tracebacks).
    assert found < asked / 10, f"{found} objects in cycles after {asked} requests"


async def _garbage_after_requests(address: str, signing_key: tuple[Any, Path], redis_url: str,
                                  rounds: int = 40) -> tuple[int, set[int], int]:
    """What the collector finds after `rounds` of requests of every kind (and the statuses
    they got, and how many there were)."""
    app = create_app(settings_for(address, signing_key, redis_url,
                                  rate_limit_rate=1000.0, rate_limit_burst=100_000))
    admin = ("Authorization", f"Bearer {make_token(signing_key[0], 'a1', 'admin')}")
    asks = [rawhttp.request("/products/P1"),                           # the cache, then hits
            rawhttp.request("/products/P2", ("Cache-Control", "no-cache")),  # a miss
            rawhttp.request("/products?limit=5"),                      # FastAPI's router
            rawhttp.request("/products", admin, ("Content-Type", "application/json"),
                            body=b'{"name": "x", "price": "1.00"}', method="POST"),
            rawhttp.request("/products/GONE"),                         # the service's 404
            rawhttp.request("/products", admin, ("Content-Type", "application/json"),
                            body=b'{"name": 1}', method="POST"),      # FastAPI's 400
            rawhttp.request("/products", admin, ("Content-Type", "application/json"),
                            body=b'{"name": ', method="POST"),        # not JSON: 400
            rawhttp.request("/nowhere"),                               # no route: 404
            rawhttp.request("/products/P1", ("Authorization", "Bearer nope"))]  # 401
    statuses: set[int] = set()

    def ask() -> int:
        with rawhttp.serve(app=app, lifespan="on") as served, rawhttp.connect(served) as sock:
            reader = sock.makefile("rb")

            def ask_all() -> None:
                for each in asks:
                    sock.sendall(each)
                    statuses.add(rawhttp.read_response(reader)[0])

            ask_all()  # warm what first requests fill (metrics children, the cache entry)
            gc.collect()
            gc.disable()
            try:
                for _ in range(rounds):
                    ask_all()
                return gc.collect()
            finally:
                gc.enable()

    return await asyncio.to_thread(ask), statuses, rounds * len(asks)
