"""The root span of every request at the edge (a SERVER span), and whose trace it continues.

A request's W3C `traceparent` (and `tracestate`) is believed only from a trusted proxy: when the
direct peer is inside PORTICO_TRUSTED_PROXIES, as for X-Forwarded-For. From anyone else it is
ignored and the request starts a trace of its own, so a client can neither join another's
trace nor choose whether its requests are sampled. The span is named by the route template
(`GET /products/{id}`: never by the path a client wrote), carries the request id, the status
and the client's address, and is current for everything the request does, so every later span,
log line and upstream call belongs to it. Probes and scrapes (`/healthz`, `/readyz`,
`/metrics`) are not traced.

Only built when traces are on (gateway/app.py); while they are off the pipeline has no
EdgeTracing and pays one `is None` per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.edge.accesslog import ROUTINE
from gateway.edge.request import EdgeRequest
from gateway.policies.clientip import IPNetwork, parse_networks

_W3C = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_NO_ROUTE = "other"


def trusted_peer(peer: str | None, trusted: Sequence[IPNetwork]) -> bool:
    """Whether the direct peer is one of the trusted proxies (IPv4-mapped IPv6 addresses count
    as their IPv4 address)."""
    if not peer or not trusted or len(peer) > 64:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


def incoming_context(headers: Iterable[tuple[bytes, bytes]], peer: str | None,
                     trusted: Sequence[IPNetwork]) -> context.Context | None:
    """The trace context a request asks to continue: its traceparent when the peer is a trusted
    proxy and the header is well-formed; None (a new trace) otherwise."""
    if not trusted_peer(peer, trusted):
        return None
    carrier = {name.decode("latin-1"): value.decode("latin-1")
               for name, value in headers if name in _TRACE_HEADERS}
    if "traceparent" not in carrier:
        return None
    extracted = _W3C.extract(carrier)
    # A malformed traceparent extracts to no span at all: a new trace, as without one.
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


class EdgeTracing:
    """Opens the root span of each request."""

    def __init__(self, *, trusted_proxies: Sequence[str]) -> None:
        self._trusted = parse_networks(trusted_proxies)
        self._tracer = trace.get_tracer("portico.gateway")

    def begin(self, headers: Iterable[tuple[bytes, bytes]], request: EdgeRequest,
              label: str) -> RequestSpan | None:
        """The request's span, made current; None for probes and scrapes."""
        if label in ROUTINE:
            return None
        parent = incoming_context(headers, request.peer, self._trusted)
        name = request.method if label == _NO_ROUTE else f"{request.method} {label}"
        attributes = {"http.request.method": request.method,
                      "url.path": request.path[:256],
                      "portico.request_id": request.request_id}
        if label != _NO_ROUTE:
            attributes["http.route"] = label
        if request.peer:
            attributes["client.address"] = request.peer
        span = self._tracer.start_span(name, context=parent or context.Context(),
                                       kind=SpanKind.SERVER, attributes=attributes)
        return RequestSpan(span, context.attach(trace.set_span_in_context(span)))


class RequestSpan:
    """A request's root span while the request runs."""

    __slots__ = ("span", "_token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self.span = span
        self._token = token

    def exemplar(self) -> dict[str, str] | None:
        """{"trace_id": ...} for the latency histogram when this trace is recorded (a trace
        that was sampled out leads nowhere)."""
        span_context = self.span.get_span_context()
        if not span_context.trace_flags.sampled:
            return None
        return {"trace_id": format(span_context.trace_id, "032x")}

    def end(self, status: int) -> None:
        """Ends the span with the answer's status (5xx marks it failed) and makes the context
        before it current again."""
        span = self.span
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end()
        context.detach(self._token)
