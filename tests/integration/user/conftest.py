"""Fixtures of the User service tests: a migrated database of the module's own, a real server
on a free port started through `services.user.server.start`, and a stub over a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from portico.user.v1 import user_pb2_grpc
from services.common.server import RunningServer
from services.common.settings import ServiceSettings
from services.user import server


@pytest.fixture(scope="module")
def user_settings(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> ServiceSettings:
    return ServiceSettings(database_url=pg_database, state_dir=tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def migrated(user_settings: ServiceSettings) -> ServiceSettings:
    server.migrate(user_settings)
    return user_settings


@pytest.fixture(scope="module")
def sync_engine(pg_database: str) -> Iterator[Engine]:
    """A plain engine for looking at the tables behind the service's back."""
    engine = create_engine(pg_database)
    yield engine
    engine.dispose()


@pytest_asyncio.fixture(scope="module")
async def running(migrated: ServiceSettings) -> AsyncIterator[RunningServer]:
    started, cleanup = await server.start(migrated)
    yield started
    await started.stop(0)
    await cleanup()


@pytest_asyncio.fixture(scope="module")
async def channel(running: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def stub(channel: grpc.aio.Channel) -> user_pb2_grpc.UserServiceStub:
    return user_pb2_grpc.UserServiceStub(channel)

