"""Every row of the gRPC -> HTTP status table, reached from REST through a real gRPC server
that answers each code on purpose, with its problem+json body and google.rpc details."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common import errors
from tests.integration.gateway.conftest import gateway_client, grpc_server, settings_for

TABLE = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


class FaultyProducts(product_pb2_grpc.ProductServiceServicer):
    """GetProduct answers the status code named by the product id."""

    async def GetProduct(self, request, context):
        code = request.id
        if code == "OK":
            return product_pb2.GetProductResponse(product=product_pb2.Product(
                id="OK", name="fine", price="1.00"))
        if code == "violations":
            raise errors.InvalidArgument("bad fields", violations=[("price", "not money")])
        if code == "declined":
            raise errors.FailedPrecondition("declined", reason="PAYMENT_DECLINED")
        if code == "out_of_stock":
            raise errors.FailedPrecondition("short", reason="OUT_OF_STOCK")
        if code == "slow":
            await asyncio.sleep(5)
        await context.abort(getattr(grpc.StatusCode, code), f"secret internal detail {code}")


@pytest.fixture(scope="module")
async def client(signing_key, redis_url):
    async with grpc_server((product_pb2_grpc.add_ProductServiceServicer_to_server,
                            FaultyProducts(), "portico.product.v1.ProductService")) as address:
        settings = settings_for(address, signing_key, redis_url, upstream_timeout_seconds=1,
                                retry_max_attempts=1, breaker_failure_threshold=1000,
                                rate_limit_enabled=False, cache_enabled=False)
        async with gateway_client(settings) as http:
            yield http


@pytest.mark.parametrize("code, status", sorted(TABLE.items()))
async def test_each_grpc_code_has_its_http_status(client, code, status) -> None:
    if code == "DEADLINE_EXCEEDED":
        code = "slow"  # a real deadline, not a made-up code
    answer = await client.get(f"/products/{code}")
    assert answer.status_code == status
    if status == 200:
        return
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= problem.keys()
    assert problem["instance"] == f"/products/{code}"
    if status >= 500:
        assert "secret" not in answer.text and "127.0.0.1" not in answer.text


async def test_field_violations_become_errors(client) -> None:
    problem = (await client.get("/products/violations")).json()
    assert problem["status"] == 400
    assert problem["errors"] == [{"field": "price", "message": "not money"}]


@pytest.mark.parametrize("reason, status", [("declined", 402), ("out_of_stock", 409)])
async def test_reasons_refine_the_status(client, reason, status) -> None:
    answer = await client.get(f"/products/{reason}")
    assert answer.status_code == status
    assert answer.json()["code"] in ("PAYMENT_DECLINED", "OUT_OF_STOCK")


async def test_request_id_is_returned_and_in_the_problem(client) -> None:
    answer = await client.get("/products/NOT_FOUND", headers={"X-Request-ID": "abc-123"})
    assert answer.headers["x-request-id"] == "abc-123"
    assert answer.json()["request_id"] == "abc-123"


def test_error_details_decode() -> None:
    """The details the services attach are the standard google.rpc ones."""
    status = errors.FailedPrecondition("x", reason="OUT_OF_STOCK").to_status()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "OUT_OF_STOCK"
