"""Abuse limits of the user service, whoever calls it: the email checked before a password is
hashed, a bound on hashes at once per instance, and a login back-off per account shared by
every instance through Redis."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from portico.user.v1 import user_pb2 as pb
from portico.user.v1 import user_pb2_grpc
from portico.user.v1.user_pb2_grpc import UserServiceStub
from services.common.db import async_engine
from services.common.errors import details_of
from services.common.settings import ServiceSettings
from services.user import server, tokens
from services.user.passwords import Passwords
from services.user.servicer import SERVICE_NAME, UserServicer
from services.user.store import UserStore
from tests.trust import channel, serve, tls_for

PASSWORD = "right-password-1"


def _email() -> str:
    return f"abuse-{uuid.uuid4().hex[:10]}@example.com"


async def _failure(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def _login(stub: UserServiceStub, email: str, password: str):
    return await stub.Login(pb.LoginRequest(email=email, password=password))


class CountingPasswords(Passwords):
    """Counts the hashes it makes."""

    def __init__(self) -> None:
        super().__init__()
        self.hashed = 0

    async def hash(self, password: str) -> str:
        self.hashed += 1
        return await super().hash(password)


async def test_a_taken_email_costs_no_hash(migrated: ServiceSettings) -> None:
    private_pem, _ = tokens.load_or_create_keys(migrated)
    issuer = tokens.TokenIssuer(private_pem, issuer="portico", ttl_seconds=60)
    engine = async_engine(migrated.database_url, pool_size=2)
    passwords = CountingPasswords()
    running = await serve([(user_pb2_grpc.add_UserServiceServicer_to_server,
                            UserServicer(UserStore(engine), issuer, passwords=passwords),
                            SERVICE_NAME)])
    try:
        async with channel(f"127.0.0.1:{running.port}",
                           tls_for(migrated.state_dir, "gateway")) as opened:
            stub = UserServiceStub(opened)
            email = _email()
            await stub.CreateUser(pb.CreateUserRequest(name="A", email=email, password=PASSWORD))
            assert passwords.hashed == 1
            for _ in range(3):
                refused = await _failure(stub.CreateUser(pb.CreateUserRequest(
                    name="A", email=email.upper(), password=PASSWORD)))
                assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
            assert passwords.hashed == 1
    finally:
        await running.stop(0)
        await engine.dispose()


async def test_hashes_beyond_the_bound_are_refused_at_once(migrated: ServiceSettings) -> None:
    bounded, cleanup = await server.start(migrated.model_copy(
        update={"max_concurrent_hashes": 1}))
    try:
        async with channel(f"127.0.0.1:{bounded.port}",
                           tls_for(migrated.state_dir, "gateway")) as opened:
            stub = UserServiceStub(opened)
            results = await asyncio.gather(*(stub.CreateUser(pb.CreateUserRequest(
                name="B", email=_email(), password=PASSWORD)) for _ in range(4)),
                return_exceptions=True)
    finally:
        await bounded.stop(0)
        await cleanup()
    made = [r for r in results if isinstance(r, pb.CreateUserResponse)]
    busy = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert made and busy and len(made) + len(busy) == 4
    for refusal in busy:
        assert refusal.code() == grpc.StatusCode.UNAVAILABLE
        rich = details_of(refusal)
        assert rich.reason == "PASSWORD_HASHING_BUSY" and rich.retry_after == 1.0


async def test_repeated_failures_on_an_account_back_off_for_every_instance(
        migrated: ServiceSettings, stub: UserServiceStub) -> None:
    email = _email()
    await stub.CreateUser(pb.CreateUserRequest(name="C", email=email, password=PASSWORD))
    second, cleanup = await server.start(migrated)
    try:
        # Another instance, and another workload: the bucket is the account's.
        async with channel(f"127.0.0.1:{second.port}",
                           tls_for(migrated.state_dir, "restock-job")) as opened:
            elsewhere = UserServiceStub(opened)
            for _ in range(5):   # the fifth failure opens a one-second pause
                refused = await _failure(_login(stub, email, "wrong-password"))
                assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            for attempt in (_login(stub, email, PASSWORD), _login(elsewhere, email, PASSWORD)):
                throttled = await _failure(attempt)
                assert throttled.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                rich = details_of(throttled)
                assert rich.reason == "LOGIN_THROTTLED" and 0 < rich.retry_after <= 1.0
            # Other accounts are not held back.
            other = _email()
            await stub.CreateUser(pb.CreateUserRequest(name="D", email=other,
                                                       password=PASSWORD))
            await _login(elsewhere, other, PASSWORD)
            await asyncio.sleep(1.05)
            refused = await _failure(_login(elsewhere, email, "wrong-again"))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            doubled = details_of(await _failure(_login(stub, email, PASSWORD)))
            assert 1.0 < doubled.retry_after <= 2.0   # the pause doubles
            await asyncio.sleep(doubled.retry_after + 0.05)
            await _login(stub, email, PASSWORD)       # a success clears the count
            refused = await _failure(_login(stub, email, "wrong-once-more"))
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
            await _login(elsewhere, email, PASSWORD)
    finally:
        await second.stop(0)
        await cleanup()
