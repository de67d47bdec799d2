"""Fixtures of the Product service tests: a real server on a free port, started through
`services.product.server.start` against the session's SecantusDB (or MongoDB) and Redis, a stub
over a real mTLS channel (as the order service, with an admin's token: it may call everything),
and a direct database handle for looking behind the service's back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from portico.product.v1 import product_pb2_grpc
from services.common.server import RunningServer
from services.common.settings import ServiceSettings
from services.product import server
from tests.trust import channel, mint, tls_for


@pytest.fixture(scope="module")
def product_settings(mongo_uri: str, mongo_database_name: str, redis_url: str,
                     state_dir: Path) -> ServiceSettings:
    return ServiceSettings(mongodb_uri=mongo_uri, mongodb_database=mongo_database_name,
                           redis_url=redis_url, state_dir=state_dir)


@pytest_asyncio.fixture(scope="module")
async def running(product_settings: ServiceSettings) -> AsyncIterator[RunningServer]:
    started, cleanup = await server.start(product_settings)
    yield started
    await started.stop(0)
    await cleanup()


@pytest_asyncio.fixture(scope="module")
async def stub(running: RunningServer, state_dir: Path
               ) -> AsyncIterator[product_pb2_grpc.ProductServiceStub]:
    admin = mint(state_dir, "product-tests-admin", "admin", ttl=3600)
    async with channel(f"127.0.0.1:{running.port}", tls_for(state_dir, "order"),
                       token=admin) as opened:
        yield product_pb2_grpc.ProductServiceStub(opened)


@pytest_asyncio.fixture(scope="module")
async def mongo(mongo_uri: str, mongo_database_name: str) -> AsyncIterator[AsyncDatabase]:
    """The service's database, read directly (hold markers, indexes)."""
    client = AsyncMongoClient(mongo_uri)
    yield client[mongo_database_name]
    await client.close()
