"""The call chain against real gRPC servers: retries only where safe and on another instance,
breakers that count only server-side failures, and no waiting when no instance is usable."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gateway.upstream.call import BreakerConfig, CallPolicy, RetryBudget, Upstream
from gateway.upstream.pool import NoInstanceAvailable
from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.mtls import channel_credentials
from tests.trust import serve, session_state_dir, tls_for

READ = CallPolicy(retry_unavailable=True, read=True)
WRITE = CallPolicy(retry_unavailable=False, read=False)
Stub = product_pb2_grpc.ProductServiceStub


class Instance(product_pb2_grpc.ProductServiceServicer):
    """Answers GetProduct with `code` (OK by default) and counts the calls."""

    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.OK) -> None:
        self.code = code
        self.calls = 0

    async def GetProduct(self, request, context):
        self.calls += 1
        if self.code != grpc.StatusCode.OK:
            await context.abort(self.code, "as told")
        return product_pb2.GetProductResponse(product=product_pb2.Product(id=request.id))


@pytest.fixture
async def fleet():
    """Instance a fails with UNAVAILABLE, b answers; the round robin starts with a."""
    a, b = Instance(grpc.StatusCode.UNAVAILABLE), Instance()
    servers = [await serve([(product_pb2_grpc.add_ProductServiceServicer_to_server, s,
                             "portico.product.v1.ProductService")]) for s in (a, b)]
    upstream = Upstream(
        {"product": ("portico.product.v1.ProductService",
                     [f"127.0.0.1:{server.port}" for server in servers])},
        breaker=BreakerConfig(fail_max=3, reset_timeout=60), timeout=5, max_attempts=3,
        initial_backoff=0.001, max_backoff=0.01, budget=RetryBudget(1.0, 100.0),
        credentials=channel_credentials(tls_for(session_state_dir(), "gateway")))
    upstream.start(0.05)
    yield upstream, a, b, servers
    await upstream.close()
    for server in servers:
        await server.stop(0)


async def get(upstream: Upstream, policy: CallPolicy):
    return await upstream.call("product", Stub, "GetProduct",
                               product_pb2.GetProductRequest(id="P1"), policy=policy,
                               request_id="test")


async def test_a_read_is_retried_on_the_other_instance(fleet) -> None:
    upstream, a, b, _ = fleet
    answer = await get(upstream, READ)
    assert answer.product.id == "P1" and (a.calls, b.calls) == (1, 1)


async def test_a_write_without_a_key_is_never_retried(fleet) -> None:
    upstream, a, b, _ = fleet
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await get(upstream, WRITE)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (a.calls, b.calls) == (1, 0)


async def test_server_failures_open_the_breaker_and_the_instance_is_skipped(fleet) -> None:
    upstream, a, b, _ = fleet
    for _ in range(10):
        await get(upstream, READ)
    assert a.calls == 3      # fail_max: then its breaker is open and nobody calls it
    assert upstream.pools["product"].instances[0].breaker.state == "open"


async def test_client_errors_never_open_a_breaker(fleet) -> None:
    upstream, a, b, _ = fleet
    a.code = grpc.StatusCode.NOT_FOUND
    for _ in range(20):
        with pytest.raises(grpc.aio.AioRpcError):
            await get(upstream, READ)
        await get(upstream, READ)   # b, in turn
    assert all(i.breaker.state == "closed" for i in upstream.pools["product"].instances)


async def test_no_usable_instance_fails_at_once(fleet) -> None:
    upstream, a, b, servers = fleet
    for server in servers:
        await server.stop(0)
    pool = upstream.pools["product"]
    for _ in range(100):
        if not any(i.healthy for i in pool.instances):
            break
        await asyncio.sleep(0.05)
    with pytest.raises(NoInstanceAvailable) as failure:
        await get(upstream, READ)
    assert failure.value.retry_after >= 0
