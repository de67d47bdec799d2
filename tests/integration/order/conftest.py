"""Fixtures of the Order service tests: the real neighbours it calls (a User server and two
Product servers, so that grpc's round_robin has more than one instance to spread over) and the
Order server itself, all on free ports, against the module's own PostgreSQL database and the
session's SecantusDB (or MongoDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from portico.order.v1 import order_pb2_grpc
from portico.product.v1 import product_pb2_grpc
from portico.user.v1 import user_pb2_grpc
from services.common.clients import service_channel
from services.common.db import async_engine
from services.common.settings import ServiceSettings
from services.order import server as order_server
from services.product import server as product_server
from services.user import server as user_server

from .support import Stack


@pytest.fixture(scope="module")
def base_settings(pg_database: str, mongo_uri: str, mongo_database_name: str,
                  tmp_path_factory: pytest.TempPathFactory) -> ServiceSettings:
    return ServiceSettings(database_url=pg_database, mongodb_uri=mongo_uri,
                           mongodb_database=mongo_database_name, redis_url=None,
                           state_dir=tmp_path_factory.mktemp("state"))


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
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{started[-1][0].port}"),
        grpc.aio.insecure_channel(f"127.0.0.1:{user_port}"),
        service_channel(settings.product_addrs, "portico.product.v1.ProductService"),
    ]
    engine = async_engine(settings.database_url, pool_size=2)
    yield Stack(settings=settings,
                orders=order_pb2_grpc.OrderServiceStub(channels[0]),
                users=user_pb2_grpc.UserServiceStub(channels[1]),
                products=product_pb2_grpc.ProductServiceStub(channels[2]),
                engine=engine, product_servers=[running for running, _ in started[1:3]])
    await engine.dispose()
    for channel in channels:
        await channel.close()
    for running, cleanup in reversed(started):
        await running.stop(0)
        await cleanup()
