"""The order service's channels (services/common/clients.py) with a dns: target: grpc resolves
the name itself, the certificates are checked against the name, a new instance is reached once
the servers' maximum connection age closes the connections (about a second here), and a dead
instance's address is looked up again within a second. Instances on 127.0.0.2, .3 (one port),
the test's own DNS server answering the name."""

from __future__ import annotations

import contextlib
import time

import grpc
import pytest

from portico.user.v1 import user_pb2, user_pb2_grpc
from services.common.addresses import check_addresses
from services.common.clients import service_channel
from services.common.server import ConnectionAge
from tests.fleet import fleet as serve_fleet
from tests.fleet import tls_naming, within

NAME = "user.portico.test"
HOSTS = ("127.0.0.2", "127.0.0.3")
SERVICE = "portico.user.v1.UserService"
AGE = ConnectionAge(seconds=1.0, grace_seconds=1.0)


class Named(user_pb2_grpc.UserServiceServicer):
    """Answers GetUser with its own address as the user id."""

    def __init__(self, host: str) -> None:
        self.host = host

    async def GetUser(self, request, context):
        return user_pb2.GetUserResponse(user=user_pb2.User(id=self.host))


def fleet(name: str = NAME) -> contextlib.AbstractAsyncContextManager:
    return serve_fleet(HOSTS, lambda host: (
        user_pb2_grpc.add_UserServiceServicer_to_server, Named(host), SERVICE), name=name,
        connection_age=AGE)


async def who(stub: user_pb2_grpc.UserServiceStub) -> str:
    return (await stub.GetUser(user_pb2.GetUserRequest(id="u"), timeout=2)).user.id


async def test_a_new_instance_is_reached_once_connections_age() -> None:
    async with fleet() as (dns, port, _):
        dns.set(NAME, HOSTS[:1])
        target = check_addresses([dns.target(NAME, port)])
        async with service_channel(target, SERVICE, tls_naming("order", [])) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            assert await who(stub) == HOSTS[0]
            dns.set(NAME, HOSTS)
            took = await within(4, lambda: _answers(stub, HOSTS[1]), "the new instance")
            print(f"new instance reached after {took:.2f}s")


async def test_a_dead_instance_is_looked_up_again_within_a_second() -> None:
    async with fleet() as (dns, port, servers):
        dns.set(NAME, HOSTS)
        target = [dns.target(NAME, port)]
        async with service_channel(target, SERVICE, tls_naming("order", [])) as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            await within(4, lambda: _answers(stub, HOSTS[1]), "both instances in use")
            dns.set(NAME, HOSTS[1:])
            queries = dns.queries
            await servers[HOSTS[0]].server.stop(0)
            started = time.monotonic()
            # Every call is answered meanwhile (retried on the live instance by the channel).
            answers = {await who(stub) for _ in range(20)}
            assert answers == {HOSTS[1]}
            await within(2, lambda: dns.queries > queries, "looked up again")
            print(f"looked up again {time.monotonic() - started:.2f}s after the crash")


async def test_the_certificate_must_name_the_dns_name() -> None:
    async with fleet(name="someone-else.test") as (dns, port, _):
        dns.set(NAME, HOSTS[:1])
        async with service_channel([dns.target(NAME, port)], SERVICE,
                                   tls_naming("order", [])) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await who(user_pb2_grpc.UserServiceStub(channel))
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def _answers(stub, host: str) -> bool:
    return await who(stub) == host
