"""What services/common gives the User service at run time: health checks and reflection."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from portico.user.v1 import user_pb2 as pb
from portico.user.v1.user_pb2_grpc import UserServiceStub
from services.common.server import RunningServer
from services.common.settings import ServiceSettings
from services.user import server, tokens
from tests.integration.runtime.cli import portico_service
from tests.trust import channel as secure_channel
from tests.trust import tls_for

from .support import public_key

SERVICE = "portico.user.v1.UserService"


@pytest.mark.parametrize("name", [SERVICE, ""])
async def test_health_says_serving(channel: grpc.aio.Channel, name: str) -> None:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=name))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_of_an_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="portico.nothing.v1.Nothing"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def _reflect(channel: grpc.aio.Channel,
                   request: reflection_pb2.ServerReflectionRequest
                   ) -> reflection_pb2.ServerReflectionResponse:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    await call.write(request)
    await call.done_writing()
    return await call.read()


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    response = await _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in response.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= names


async def test_reflection_describes_the_user_service(channel: grpc.aio.Channel) -> None:
    response = await _reflect(channel, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol=SERVICE))
    files = response.file_descriptor_response.file_descriptor_proto
    assert files and any(b"UserService" in f and b"CreateUser" in f for f in files)


async def test_a_second_instance_shares_the_keys_and_stops_gracefully(
        migrated: ServiceSettings, running: RunningServer, stub: UserServiceStub) -> None:
    """Two instances on one database and state dir: a user made through one signs in through
    the other; on stop an instance says NOT_SERVING before it drains."""
    second, cleanup = await server.start(migrated)
    try:
        assert second.port != running.port
        await stub.CreateUser(pb.CreateUserRequest(
            name="Two", email="two-instances@example.com", password="two-instances"))
        credentials = pb.LoginRequest(email="two-instances@example.com", password="two-instances")
        first_token = (await stub.Login(credentials)).access_token
        tls = tls_for(migrated.state_dir, "gateway")
        async with secure_channel(f"127.0.0.1:{second.port}", tls) as channel:
            second_token = (await UserServiceStub(channel).Login(credentials)).access_token
            public_pem = public_key(migrated)
            for token in (first_token, second_token):
                assert tokens.verify(token, public_pem, migrated.jwt_issuer)["role"] == "customer"
            await second.health.enter_graceful_shutdown()
            status = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE))
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await second.stop(0)
        await cleanup()


async def test_the_portico_command_migrates_and_serves(
        migrated: ServiceSettings, tmp_path: Path) -> None:
    """`portico migrate user` ensures the admin; `portico service user` serves until SIGTERM."""
    env = {**os.environ, "PORTICO_DATABASE_URL": migrated.database_url,
           "PORTICO_STATE_DIR": str(tmp_path), "PORTICO_ADMIN_EMAIL": "cli-admin@example.com",
           "PORTICO_ADMIN_PASSWORD": "cli-admin-password"}
    async with portico_service("user", env) as service:
        login = await UserServiceStub(service.channel).Login(pb.LoginRequest(
            email="CLI-admin@example.com", password="cli-admin-password"))
        claims = tokens.verify(login.access_token,
                               (tmp_path / "keys" / "jwt-ed25519.pub.pem").read_bytes(),
                               migrated.jwt_issuer)
        assert claims["role"] == "admin"
    assert service.returncode == 0, service.log.decode()[-2000:]
    assert b"cli-admin-password" not in service.log and b"$argon2" not in service.log
