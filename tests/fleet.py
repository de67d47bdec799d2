"""Instances of a service on distinct loopback addresses (127.0.0.2, 127.0.0.3...) and one port,
as the addresses one DNS name resolves to, each with a certificate of the session's CA naming
that DNS name, with the test's DNS server beside them; and waiting, within a deadline, for a
condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import SimpleNamespace

from scripts.devstack.servers import find_free_port
from services.common import pki
from services.common.admission import Admission
from services.common.callers import CallerRules
from services.common.server import ConnectionAge, RunningServer, create_server
from tests.dnsserver import DnsServer
from tests.trust import session_state_dir


def tls_naming(identity: str, hosts: Sequence[str]) -> pki.TlsMaterial:
    """A certificate of the session's CA for `identity`, valid for `hosts`."""
    settings = SimpleNamespace(state_dir=session_state_dir(), mtls_ca_file=None,
                               mtls_cert_file=None, mtls_key_file=None)
    return pki.material(settings, identity, hosts=hosts)


async def serve_at(registrations, *, host: str, port: int, name: str, identity: str = "fake",
                   connection_age: ConnectionAge | None = None) -> RunningServer:
    """A server on host:port whose certificate names `name` and `host`, open to every
    certificate of the session's CA."""
    return await create_server(list(registrations), tls=tls_naming(identity, [name, host]),
                               admission=Admission(CallerRules.allow_all()), host=host,
                               port=port, connection_age=connection_age)


@contextlib.asynccontextmanager
async def fleet(hosts: Sequence[str], registration: Callable[[str], tuple], *, name: str,
                connection_age: ConnectionAge | None = None,
                ) -> AsyncIterator[tuple[DnsServer, int, dict[str, RunningServer]]]:
    """A server on each of `hosts` (one port) with `registration(host)`, and a DNS server
    (which names nothing until the test sets it): yields the DNS server, the port and the
    servers by host, and stops them all afterwards."""
    port = find_free_port(hosts)
    servers = {host: await serve_at([registration(host)], host=host, port=port, name=name,
                                    connection_age=connection_age) for host in hosts}
    try:
        with DnsServer() as dns:
            yield dns, port, servers
    finally:
        for server in servers.values():
            await server.stop(0)


async def within(seconds: float, check: Callable[[], bool | Awaitable[bool]],
                 what: str, *, pause: float = 0.02) -> float:
    """Waits until `check()` holds; its time in seconds, or AssertionError after `seconds`."""
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise AssertionError(f"{what}: not within {seconds}s")
        await asyncio.sleep(pause)
