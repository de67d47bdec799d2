"""Fixtures of the User service tests: a migrated database of the module's own, a real server
on a free port started through `services.user.server.start` (with the session's PKI and JWT
keys, and Redis for revocations and the login throttle), and stubs over real mTLS channels: as
an admin service account (`stub`, what internal jobs use), and as nobody (`anonymous`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from portico.user.v1 import user_pb2_grpc
from services.common.server import RunningServer
from services.common.settings import ServiceSettings
from services.user import server
from tests.trust import channel as secure_channel
from tests.trust import mint, tls_for

SERVICE_ACCOUNT = "svc-admin-tests"


@pytest.fixture(scope="module")
def user_settings(pg_database: str, state_dir: Path, redis_url: str) -> ServiceSettings:
    # Hashes at once: enough for the tests that race several sign-ups (the bound has its own).
    return ServiceSettings(database_url=pg_database, state_dir=state_dir, redis_url=redis_url,
                           max_concurrent_hashes=16)


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


@pytest.fixture(scope="module")
def address(running: RunningServer) -> str:
    return f"127.0.0.1:{running.port}"


@pytest_asyncio.fixture(scope="module")
async def channel_of(address: str, state_dir: Path) -> AsyncIterator:
    """Opens channels to the server as a workload (default: the gateway) carrying a token;
    closed with the module."""
    opened: list[grpc.aio.Channel] = []

    def open_channel(token: str | None = None, identity: str = "gateway") -> grpc.aio.Channel:
        opened.append(secure_channel(address, tls_for(state_dir, identity), token=token))
        return opened[-1]

    yield open_channel
    for each in opened:
        await each.close()


@pytest_asyncio.fixture(scope="module")
async def channel(channel_of, state_dir: Path) -> grpc.aio.Channel:
    """A channel as the admin service account of an internal job."""
    return channel_of(mint(state_dir, SERVICE_ACCOUNT, "admin", ttl=3600))


@pytest.fixture(scope="module")
def stub(channel: grpc.aio.Channel) -> user_pb2_grpc.UserServiceStub:
    return user_pb2_grpc.UserServiceStub(channel)


@pytest_asyncio.fixture(scope="module")
async def anonymous(channel_of) -> user_pb2_grpc.UserServiceStub:
    """A stub that carries no access token."""
    return user_pb2_grpc.UserServiceStub(channel_of())
