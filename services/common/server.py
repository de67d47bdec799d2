"""gRPC server bootstrap: TLS with client certificates, health, reflection, the interceptor,
and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.admission import Admission
from services.common.interceptors import RequestContextInterceptor
from services.common.mtls import server_credentials
from services.common.pki import TlsMaterial
from services.common.tracing.rpc import server_interceptors

log = logging.getLogger("portico.server")

_OPTIONS = [
    ("grpc.so_reuseport", 0),
    # Clients (the gateway, the order service) ping their connections every second to find
    # dead peers (services/common/keepalive.py). By default a server counts a ping less than 5
    # minutes after the last one as a strike and, at the third, sends GOAWAY too_many_pings:
    # every call in flight on that connection then fails (seen every 2 minutes on an idle
    # stack when the gateway pinged every 30 s). Accept the pings.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
]
# A connection must finish its TLS handshake within this (grpc's default is 120 s): anyone who
# reaches the port, certificate or not, could otherwise hold a connection that long by sending
# nothing.
HANDSHAKE_TIMEOUT_SECONDS = 10.0

# (add_XServicer_to_server, servicer instance, full service name from the descriptor)
Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, str]


@dataclass
class RunningServer:
    """A started server, the port it bound and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_names: tuple[str, ...]

    async def stop(self, grace: float) -> None:
        """Says NOT_SERVING first, so balancers stop sending, then drains in-flight calls."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


@dataclass(frozen=True)
class ConnectionAge:
    """How long a client connection may live (grpc adds +-10% jitter), and the grace its calls
    then get to finish. Closing connections now and then (GOAWAY) makes clients connect anew,
    resolving their dns: targets again, so new instances get their share."""

    seconds: float
    grace_seconds: float

    @classmethod
    def of(cls, settings: Any) -> ConnectionAge | None:
        """From a service's settings; None when turned off (0)."""
        if not settings.max_connection_age_seconds:
            return None
        return cls(settings.max_connection_age_seconds, settings.max_connection_age_grace_seconds)

    def options(self) -> list[tuple[str, int]]:
        return [("grpc.max_connection_age_ms", int(self.seconds * 1000)),
                ("grpc.max_connection_age_grace_ms", int(self.grace_seconds * 1000))]


async def create_server(
    registrations: Sequence[Registration], *, tls: TlsMaterial, admission: Admission,
    host: str = "127.0.0.1", port: int = 0, connection_age: ConnectionAge | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS,
) -> RunningServer:
    """Starts a grpc.aio server for the given servicers; port 0 binds a free port. It speaks
    TLS only and requires a client certificate of the CA in `tls`: no port answers plaintext.
    `admission` decides, per call, who may call what."""
    options = [*_OPTIONS, ("grpc.server_handshake_timeout_ms", int(handshake_timeout * 1000)),
               *(connection_age.options() if connection_age else [])]
    # The tracing interceptor (none while traces are off) runs outside ours: see rpc.py.
    server = grpc.aio.server(interceptors=[*server_interceptors(),
                                           RequestContextInterceptor(admission)],
                             options=options)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = []
    for add, servicer, name in registrations:
        add(servicer, server)
        names.append(name)
    reflection.enable_server_reflection(
        (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME),
        server,
    )
    bound = server.add_secure_port(f"{host}:{port}", server_credentials(tls))
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port}")
    await server.start()
    for name in (*names, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, bound, health_servicer, tuple(names))


async def serve_until_signalled(running: RunningServer, *, grace: float,
                                on_stop: Callable[[], Any] | None = None) -> None:
    """Serves until SIGINT or SIGTERM, then stops gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving", extra={"port": running.port, "services": list(running.service_names)})
    await stop.wait()
    log.info("stopping", extra={"grace_seconds": grace})
    await running.stop(grace)
    if on_stop is not None:
        result = on_stop()
        if asyncio.iscoroutine(result):
            await result
    with contextlib.suppress(NotImplementedError):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
