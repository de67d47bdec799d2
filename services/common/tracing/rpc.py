"""Traces over gRPC: OpenTelemetry's own grpc.aio interceptors, or none while traces are off.

The server interceptor goes first, outside the services' own (interceptors.py), so that the
SERVER span is current while the request id is set, the caller admitted and the `rpc` line
logged (that line then carries the trace id), and so that the status a ServiceError is turned
into (`context.abort`) lands on the span. It takes the W3C `traceparent` of the call's
metadata: every caller holds a certificate of the deployment's CA, so the services believe it.
Health checks and reflection come from machines, every second or so: they are never traced.
"""

from __future__ import annotations

import grpc

from services.common.tracing import state

_UNTRACED = ("grpc.health.v1.Health", "grpc.reflection.")


def _traced(details) -> bool:
    method = details.method.decode() if isinstance(details.method, bytes) else details.method
    return not method.lstrip("/").startswith(_UNTRACED)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The interceptor that opens a SERVER span per call (continuing the caller's trace), to
    put before the services' own; none while traces are off."""
    if not state.active():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(filter_=_traced)]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The interceptors that open a CLIENT span per call and send the trace on as
    `traceparent` metadata, for a channel from one service to another; none while traces are
    off (a channel without interceptors takes grpc.aio's faster path)."""
    if not state.active():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return aio_client_interceptors(filter_=_traced)
