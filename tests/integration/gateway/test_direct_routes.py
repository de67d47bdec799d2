"""GETs by id served by the edge pipeline straight away answer exactly as FastAPI's endpoints
for them do, and the requests they do not take still reach FastAPI."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

import grpc
import httpx
import pytest

from gateway.app import create_app
from gateway.edge.front import EdgeApp
from gateway.routes.dispatch import Dispatcher
from portico.product.v1 import product_pb2, product_pb2_grpc
from portico.user.v1 import user_pb2, user_pb2_grpc
from tests.integration.gateway import rawhttp
from tests.integration.gateway.conftest import (
    gateway_client,
    grpc_server,
    make_token,
    settings_for,
)
from tests.logrecords import Kept

PER_REQUEST = {"x-request-id", "date"}


class Products(product_pb2_grpc.ProductServiceServicer):
    async def GetProduct(self, request, context):
        if request.id.startswith("P"):
            product = product_pb2.Product(id=request.id, name="A", price="1.50", stock=2)
            product.create_time.FromSeconds(1_800_000_000)
            product.attributes.update({"colour": "red", "sizes": [1, 2]})
            return product_pb2.GetProductResponse(product=product)
        await context.abort(getattr(grpc.StatusCode, request.id), "secret detail")


class Users(user_pb2_grpc.UserServiceServicer):
    async def GetUser(self, request, context):
        return user_pb2.GetUserResponse(user=user_pb2.User(
            id=request.id, name="N", email=f"{request.id}@example.test", role="customer"))


@pytest.fixture(scope="module")
async def address():
    async with grpc_server(
            (product_pb2_grpc.add_ProductServiceServicer_to_server, Products(),
             "portico.product.v1.ProductService"),
            (user_pb2_grpc.add_UserServiceServicer_to_server, Users(),
             "portico.user.v1.UserService")) as served:
        yield served


def gateway(address: str, signing_key, redis_url: str, *, direct: bool = True,
            fastapi_by_id: bool = True) -> contextlib.AbstractAsyncContextManager:
    """The gateway, optionally without its direct routes or without FastAPI's GET-by-id
    endpoints (both are taken out before the first request builds the middleware stack)."""
    def prepare(app: EdgeApp) -> None:
        if not direct:
            app.edge = dataclasses.replace(app.edge, serve_direct=False)
        if not fastapi_by_id:
            by_id = ("/products/{id}", "/users/{id}")
            app.router.routes[:] = [
                r for r in app.router.routes
                if not (getattr(r, "path", None) in by_id and "GET" in r.methods)]

    return gateway_client(_settings(address, signing_key, redis_url), prepare=prepare)


def _settings(address: str, signing_key, redis_url: str):
    """One try per call, no rate limit, no cache: each request reaches the dispatcher."""
    return settings_for(address, signing_key, redis_url, retry_max_attempts=1,
                        rate_limit_enabled=False, cache_enabled=False)


def _requests(signing_key) -> list[tuple[str, str, dict[str, str]]]:
    key = signing_key[0]
    own = {"Authorization": f"Bearer {make_token(key, 'u1')}"}
    admin = {"Authorization": f"Bearer {make_token(key, 'a1', 'admin')}"}
    return [
        ("GET", "/products/P1", {}), ("GET", "/products/P1/", {}), ("GET", "/products/P1", own),
        ("GET", "/products/NOT_FOUND", {}), ("GET", "/products/UNAVAILABLE", {}),
        ("GET", "/products/INTERNAL", {}), ("GET", "/products/bad.id", {}),
        ("GET", "/products/" + "x" * 65, {}), ("HEAD", "/products/P1", {}),
        ("GET", "/products/P1?unused=1", {}),
        ("GET", "/users/u1", own), ("GET", "/users/u2", own), ("GET", "/users/u2", admin),
        ("GET", "/users/u1", {}), ("GET", "/users/u1", {"Authorization": "Bearer nope"}),
        ("GET", "/users/bad.id", own),
    ]


def _comparable(answer: httpx.Response) -> tuple:
    body = answer.json() if answer.content else None
    if isinstance(body, dict):
        body.pop("request_id", None)
    headers = sorted((k, v) for k, v in answer.headers.items() if k not in PER_REQUEST)
    return answer.status_code, headers, body


async def test_direct_routes_answer_as_fastapi_does(address, signing_key, redis_url) -> None:
    async with gateway(address, signing_key, redis_url) as fast, \
            gateway(address, signing_key, redis_url, direct=False) as slow:
        for method, path, headers in _requests(signing_key):
            direct = await fast.request(method, path, headers=headers)
            fastapi = await slow.request(method, path, headers=headers)
            assert _comparable(direct) == _comparable(fastapi), (method, path)


async def test_the_direct_routes_take_only_gets_with_a_fitting_id(
        address, signing_key, redis_url) -> None:
    """With FastAPI's GET-by-id endpoints gone, fitting GETs (and HEADs, answered as GETs
    without a body) are still answered, directly; a bad id reaches FastAPI, which now has no
    such route."""
    own = {"Authorization": f"Bearer {make_token(signing_key[0], 'u1')}"}
    async with gateway(address, signing_key, redis_url, fastapi_by_id=False) as client:
        assert (await client.get("/products/P1")).json()["id"] == "P1"
        assert (await client.get("/users/u1", headers=own)).json()["id"] == "u1"
        assert (await client.get("/users/u2", headers=own)).status_code == 403
        head = await client.head("/products/P1")
        assert (head.status_code, head.content) == (200, b"")
        assert int(head.headers["content-length"]) > 0
        assert (await client.get("/products/bad.id")).status_code == 405


@pytest.mark.parametrize("path", ["/products/P1", "/products?limit=1"])
async def test_a_gateway_bug_is_a_500_problem_not_a_bare_one(
        address, signing_key, redis_url, monkeypatch, path) -> None:
    """An exception in the gateway's own code, on a GET the pipeline answers itself and on
    one FastAPI's router answers, is a problem+json 500 with the edge's headers."""
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Dispatcher, "serve", broken)
    async with gateway(address, signing_key, redis_url) as client:
        answer = await client.get(path, headers={"X-Request-ID": "req-bug-1"})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "INTERNAL"
    assert answer.json()["request_id"] == "req-bug-1"
    assert "a bug" not in answer.text
    assert answer.headers["x-request-id"] == "req-bug-1"
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/products/P1", "/products?limit=1"])
async def test_a_gateway_bug_is_logged_once_and_its_connection_kept(
        address, signing_key, redis_url, monkeypatch, path) -> None:
    """Behind a real server, a bug answered whole is logged once, by the gateway, and the
    client's connection serves its next request: nothing is let out to the server, which would
    log it a second time and reset the connection."""
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Dispatcher, "serve", broken)
    app = create_app(_settings(address, signing_key, redis_url))
    errors = Kept(logging.ERROR)

    def ask_twice() -> list[int]:
        with rawhttp.serve(app=app) as served, rawhttp.connect(served) as sock:
            reader = sock.makefile("rb")
            statuses = []
            for _ in range(2):
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
                statuses.append(rawhttp.read_response(reader)[0])
            return statuses

    async with app.router.lifespan_context(app):
        logging.getLogger().addHandler(errors)  # the app's logging setup is in place now
        try:
            assert await asyncio.to_thread(ask_twice) == [500, 500]
        finally:
            logging.getLogger().removeHandler(errors)
    assert [record.getMessage() for record in errors.records] == ["unhandled error"] * 2


async def test_cors_covers_the_answers_the_pipeline_makes_itself(
        address, signing_key, redis_url) -> None:
    """CORS (on when origins are named) is outside the pipeline: a preflight, a GET by id the
    pipeline answers and a refusal all carry its headers; another origin gets none."""
    origin = {"Origin": "https://shop.example"}
    settings = settings_for(address, signing_key, redis_url, rate_limit_enabled=False,
                            cache_enabled=False, cors_origins=["https://shop.example"])
    async with gateway_client(settings) as client:
        preflight = await client.options("/orders", headers={
            **origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type"})
        direct = await client.get("/products/P1", headers=origin)
        refused = await client.get("/users/u1", headers=origin)
        other = await client.get("/products/P1", headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert (direct.status_code, refused.status_code) == (200, 401)
    for answer in (preflight, direct, refused):
        assert answer.headers["access-control-allow-origin"] == "https://shop.example"
    assert "RateLimit-Remaining" in direct.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in other.headers
