"""A service logs each call's `rpc` line at INFO, but health checks and reflection (calls from
balancers, probes and grpcurl) at DEBUG."""

from __future__ import annotations

import logging

from grpc_health.v1 import health_pb2, health_pb2_grpc

from portico.product.v1 import product_pb2, product_pb2_grpc
from tests.integration.gateway.test_routine_logs import recorded
from tests.trust import channel, serve, session_state_dir, tls_for


class Products(product_pb2_grpc.ProductServiceServicer):
    async def GetProduct(self, request, context):
        return product_pb2.GetProductResponse(product=product_pb2.Product(id=request.id))


async def test_health_checks_log_at_debug_and_calls_at_info() -> None:
    running = await serve([(product_pb2_grpc.add_ProductServiceServicer_to_server,
                             Products(), "portico.product.v1.ProductService")])
    tls = tls_for(session_state_dir(), "test")
    try:
        async with channel(f"127.0.0.1:{running.port}", tls) as grpc_channel:
            with recorded("portico.rpc") as records:
                await health_pb2_grpc.HealthStub(grpc_channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5)
                await product_pb2_grpc.ProductServiceStub(grpc_channel).GetProduct(
                    product_pb2.GetProductRequest(id="P1"), timeout=5)
    finally:
        await running.stop(0)
    assert [(r.method, r.levelname) for r in records if r.getMessage() == "rpc"] == [
        ("/grpc.health.v1.Health/Check", "DEBUG"),
        ("/portico.product.v1.ProductService/GetProduct", "INFO"),
    ]
    assert all(r.levelno >= logging.DEBUG for r in records)
