"""Fixtures of the Order service tests: the real neighbours it calls (a User server and two
Product servers, so that grpc's round_robin has more than one instance to spread over) and the
Order server itself, all on free ports, against the module's own PostgreSQL database and the
session's SecantusDB (or MongoDB) and Redis, with the session's PKI and JWT keys. The stubs of
the Stack act as an admin service account (products and stock as the order identity); a
customer's own calls go through `stack.as_customer`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from portico.order.v1 import order_pb2_grpc
from portico.product.v1 import product_pb2_grpc
from portico.user.v1 import user_pb2_grpc
from services.common.clients import ipv4_target, service_config
from services.common.db import async_engine
from services.common.settings import ServiceSettings
from services.order import server as order_server
from services.product import server as product_server
from services.user import server as user_server
from tests.trust import channel, mint, tls_for

from .support import Stack


@pytest.fixture(scope="module")
def base_settings(pg_database: str, mongo_uri: str, mongo_database_name: str,
                  state_dir: Path, redis_url: str) -> ServiceSettings:
    return ServiceSettings(database_url=pg_database, mongodb_uri=mongo_uri,
                           mongodb_database=mongo_database_name, redis_url=redis_url,
                           state_dir=state_dir, max_concurrent_hashes=16)


@pytest_asyncio.fixture(scope="module")
async def stack(base_settings: ServiceSettings) -> AsyncIterator[Stack]:
    # Migrations are synchronous; a thread keeps them off the event loop.
    for migrate in (user_server.migrate, product_server.migrate, order_server.migrate):
        await asyncio.to_thread(migrate, base_settings)
    started = [await user_server.start(base_settings)]
    started += [await product_server.start(base_settings) for _ in range(2)]
    user_port, *product_ports = (running.port for running, _ in started)
    settings = base_settings.model_copy(update={
        "user_addrs": [f"127.0.0.1:{user_port}"],
        "product_addrs": [f"127.0.0.1:{port}" for port in product_ports],
    })
    started.append(await order_server.start(settings))
    admin = mint(settings.state_dir, "order-tests-admin", "admin", ttl=3600)
    order_address = f"127.0.0.1:{started[-1][0].port}"
    channels = [
        channel(order_address, tls_for(settings.state_dir, "gateway"), token=admin),
        channel(f"127.0.0.1:{user_port}", tls_for(settings.state_dir, "gateway"), token=admin),
        # Round robin over both product servers, as the order service's own channel does.
        channel(ipv4_target(settings.product_addrs), tls_for(settings.state_dir, "order"),
                token=admin, options=[
                    ("grpc.service_config", service_config("portico.product.v1.ProductService")),
                    ("grpc.ssl_target_name_override", "127.0.0.1")]),
    ]
    engine = async_engine(settings.database_url, pool_size=2)
    stack = Stack(settings=settings,
                  orders=order_pb2_grpc.OrderServiceStub(channels[0]),
                  users=user_pb2_grpc.UserServiceStub(channels[1]),
                  products=product_pb2_grpc.ProductServiceStub(channels[2]),
                  engine=engine, product_servers=[running for running, _ in started[1:3]],
                  order_address=order_address)
    yield stack
    await engine.dispose()
    for opened in channels:
        await opened.close()
    await stack.close()
    for running, cleanup in reversed(started):
        await running.stop(0)
        await cleanup()
