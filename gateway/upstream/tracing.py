"""Each upstream try as a CLIENT span, the trace sent on in its metadata, and the breakers'
refusals and state changes as events.

A try's span names the instance it went to (`server.address`, `server.port`) and its place in
the retries (`portico.retry`: 0 for the first try), and ends with the gRPC status the try met.
The W3C `traceparent` goes to the service in the call's metadata, written here rather than by
OpenTelemetry's grpc.aio client interceptor: the gateway's channels are one per instance and
its tries are its own (tenacity, on another instance), which the interceptor cannot name, and a
channel with any interceptor takes grpc.aio's slower intercepted path for every call, traced or
not. While a request's trace is sampled out no span is made, but its `traceparent` (flag 00)
still goes along, so the services keep none either. With traces off nothing happens at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.common.tracing import state

Metadata = Sequence[tuple[str, str]]
_W3C = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("portico.gateway.upstream")
# Statuses that are the instance's failure rather than an answer (as the breakers count them).
_FAILED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                     grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


class _Untraced:
    """The try as it is: its metadata unchanged."""

    __slots__ = ("metadata",)

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata

    def __enter__(self) -> Metadata:
        return self.metadata

    def __exit__(self, kind, error, traceback) -> None:
        return None


class _Try:
    """One traced try: a CLIENT span, current while the call runs, its context in the
    metadata."""

    __slots__ = ("_span", "_token", "_metadata")

    def __init__(self, span: trace.Span, metadata: Metadata) -> None:
        self._span = span
        self._metadata = metadata
        self._token = None

    def __enter__(self) -> Metadata:
        self._token = context.attach(trace.set_span_in_context(self._span))
        return with_traceparent(self._metadata)

    def __exit__(self, kind, error, traceback) -> None:
        span = self._span
        code = grpc.StatusCode.OK
        if isinstance(error, grpc.aio.AioRpcError):
            code = error.code()
        elif isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        elif error is not None:
            span.record_exception(error)
            code = grpc.StatusCode.UNKNOWN
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in _FAILED:
            span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()
        context.detach(self._token)


def attempt(service: str, address: str, method: str, retry: int, metadata: Metadata):
    """A context manager around one try of `service`'s `method` at instance `address`
    (`retry` 0 for the first try); it gives the metadata to send, with the trace's
    traceparent added while traces are on."""
    if not state.active():
        return _Untraced(metadata)
    if not trace.get_current_span().is_recording():
        return _Untraced(with_traceparent(metadata))
    host, _, port = address.rpartition(":")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                  "server.address": host, "portico.retry": retry}
    if port.isdigit():
        attributes["server.port"] = int(port)
    return _Try(_tracer.start_span(f"{service}/{method}", kind=SpanKind.CLIENT,
                                   attributes=attributes), metadata)


def with_traceparent(metadata: Metadata) -> Metadata:
    """`metadata` and the current trace context as W3C traceparent (and tracestate)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return (*metadata, *carrier.items())


def breaker_event(name: str, service: str, instance: str, state_name: str) -> None:
    """An event on the current span (the try's, or the request's) when it is recorded: a
    breaker that refused the instance, or changed state."""
    if not state.active():
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, {"portico.upstream": service, "server.address": instance,
                              "portico.breaker.state": state_name})
