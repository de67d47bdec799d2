"""`portico migrate order` and `portico service order --port P`: a real process that places an
order through its neighbours and stops cleanly on SIGTERM."""

from __future__ import annotations

import os

from portico.order.v1 import order_pb2, order_pb2_grpc
from tests.integration.runtime.cli import portico_service
from tests.trust import bearer

from .support import Stack, create_request


async def test_the_portico_command_migrates_and_serves_orders(stack: Stack):
    settings = stack.settings
    env = {**os.environ, "PORTICO_DATABASE_URL": settings.database_url,
           "PORTICO_USER_ADDRS": ",".join(settings.user_addrs),
           "PORTICO_PRODUCT_ADDRS": ",".join(settings.product_addrs),
           "PORTICO_STATE_DIR": str(settings.state_dir), "PORTICO_REDIS_URL": settings.redis_url}
    customer, product = await stack.customer(), await stack.product(price="0.10", stock=5)
    # `migrate` is already at head here: nothing to do, and no error.
    async with portico_service("order", env) as service:
        orders = order_pb2_grpc.OrderServiceStub(service.channel)
        own = bearer(stack.token(customer))
        placed = await orders.CreateOrder(create_request(customer, [(product, 3)]),
                                          metadata=(("x-request-id", "cli-order-1"), *own))
        assert placed.order.total == "0.30"
        fetched = await orders.GetOrder(order_pb2.GetOrderRequest(id=placed.order.id),
                                        metadata=own)
        assert fetched.order == placed.order
    assert service.returncode == 0, service.log.decode()[-2000:]
    assert await stack.stock(product) == 2
    assert b"cli-order-1" in service.log  # its JSON log lines carry the caller's request id


async def test_orders_go_on_when_one_product_instance_stops(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=20)
    await stack.product_servers[0].stop(0)  # the module's last test: it stays down
    placed = [await stack.place(customer, [(product, 1)]) for _ in range(6)]
    assert {order.status for order in placed} == {"confirmed"}
    assert await stack.stock(product) == 14
