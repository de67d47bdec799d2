"""Mutual TLS on every service port: no plaintext, no TLS without a certificate of the CA, and
per-method caller rules on the identity in the certificate."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.mtls import channel_credentials
from services.common.pki import TlsMaterial
from tests.integration.order.support import Stack, unique
from tests.trust import channel, tls_for

CHECK = health_pb2.HealthCheckRequest()


def addresses(stack: Stack) -> dict[str, str]:
    settings = stack.settings
    return {"user": settings.user_addrs[0], "product": settings.product_addrs[0],
            "order": stack.order_address}


async def health(target: grpc.aio.Channel) -> int:
    return (await health_pb2_grpc.HealthStub(target).Check(CHECK, timeout=3)).status


@pytest.mark.parametrize("service", ["user", "product", "order"])
async def test_plaintext_is_refused(stack: Stack, service: str) -> None:
    async with grpc.aio.insecure_channel(addresses(stack)[service]) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health(plain)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", ["user", "product", "order"])
async def test_tls_without_a_client_certificate_is_refused(stack: Stack, service: str) -> None:
    ca_only = grpc.ssl_channel_credentials(
        root_certificates=tls_for(stack.settings.state_dir, "gateway").ca_pem)
    async with grpc.aio.secure_channel(addresses(stack)[service], ca_only) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health(anonymous)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", ["user", "product", "order"])
async def test_a_certificate_of_another_ca_is_refused(stack: Stack, service: str,
                                                      tmp_path: Path) -> None:
    ours = tls_for(stack.settings.state_dir, "gateway")
    theirs = tls_for(tmp_path, "gateway")  # a CA of its own, same identity
    # It trusts our CA (so the server is accepted), but shows a certificate of its own CA.
    impostor = TlsMaterial(ours.ca_pem, theirs.cert_pem, theirs.key_pem)
    credentials = channel_credentials(impostor)
    async with grpc.aio.secure_channel(addresses(stack)[service], credentials) as target:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health(target)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", ["user", "product", "order"])
async def test_health_and_reflection_answer_any_certificate_of_the_ca(stack: Stack,
                                                                      service: str) -> None:
    job = tls_for(stack.settings.state_dir, "nightly-report")
    async with channel(addresses(stack)[service], job) as target:
        assert await health(target) == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(target).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        answer = await stream.read()
        names = {s.name for s in answer.list_services_response.service}
        assert f"portico.{service}.v1.{service.capitalize()}Service" in names


async def test_a_job_certificate_cannot_move_stock(stack: Stack,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A job with a certificate of the CA (and even an admin's token) reads the catalogue but
    may not reserve, release or commit stock: only the order service may."""
    product = await stack.product(stock=5)
    job = tls_for(stack.settings.state_dir, "restock-job")
    admin = stack.token("job-admin", "admin")
    async with channel(addresses(stack)["product"], job, token=admin) as target:
        stub = product_pb2_grpc.ProductServiceStub(target)
        assert (await stub.GetProduct(product_pb2.GetProductRequest(id=product))).product.stock \
            == 5
        calls = (
            stub.ReserveStock(product_pb2.ReserveStockRequest(
                reservation_id=unique("r"), items=[product_pb2.StockItem(
                    product_id=product, quantity=1)])),
            stub.ReleaseStock(product_pb2.ReleaseStockRequest(reservation_id=unique("r"))),
            stub.CommitStock(product_pb2.CommitStockRequest(reservation_id=unique("r"))))
        with caplog.at_level(logging.WARNING, logger="portico.admission"):
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await stack.stock(product) == 5
    refused = [r for r in caplog.records if r.getMessage() == "caller refused"]
    assert len(refused) == 3 and {r.workload for r in refused} == {"restock-job"}


async def test_a_confirmed_orders_stock_cannot_be_released_behind_its_back(stack: Stack) -> None:
    """The oversell that was possible: ReleaseStock of a confirmed order's reservation by
    anyone but the order service."""
    customer, product = await stack.customer(), await stack.product(stock=3)
    order = await stack.place(customer, [(product, 2)])
    gateway = tls_for(stack.settings.state_dir, "gateway")
    async with channel(addresses(stack)["product"], gateway,
                       token=stack.token("x", "admin")) as target:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await product_pb2_grpc.ProductServiceStub(target).ReleaseStock(
                product_pb2.ReleaseStockRequest(reservation_id=order.id))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await stack.stock(product) == 1
