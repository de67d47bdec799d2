"""A client that goes away cancels its upstream call: the service sees the cancellation long
before the call's deadline."""

from __future__ import annotations

import asyncio

import pytest

from gateway.app import create_app
from portico.product.v1 import product_pb2_grpc
from tests.integration.gateway.conftest import grpc_server, settings_for


class HangingProducts(product_pb2_grpc.ProductServiceServicer):
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def GetProduct(self, request, context):
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
async def hanging(signing_key, redis_url):
    servicer = HangingProducts()
    async with grpc_server((product_pb2_grpc.add_ProductServiceServicer_to_server, servicer,
                            "portico.product.v1.ProductService")) as address:
        app = create_app(settings_for(address, signing_key, redis_url,
                                      upstream_timeout_seconds=60, rate_limit_enabled=False,
                                      cache_enabled=False))
        async with app.router.lifespan_context(app):
            yield app, servicer


async def test_disconnect_cancels_the_upstream_call(hanging) -> None:
    app, servicer = hanging
    gone = asyncio.Event()
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/products/P1", "raw_path": b"/products/P1",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"gateway")],
             "client": ("127.0.0.1", 50000), "server": ("gateway", 80)}
    request = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(servicer.started.wait(), 10)
    gone.set()
    await asyncio.wait_for(servicer.cancelled.wait(), 10)   # far inside the 60 s deadline
    await asyncio.wait_for(request, 10)
    assert sent[0]["status"] == 499
