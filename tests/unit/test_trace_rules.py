"""Tracing's rules without I/O: whose traceparent the edge believes, the trace id in log lines,
which traces are kept, which settings turn traces on, and the exemplars' exposition."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from gateway import metrics
from gateway.edge.tracing import RequestSpan, incoming_context, trusted_peer
from gateway.policies.clientip import parse_networks
from services.common.logs import JsonFormatter
from services.common.logtext import TextFormatter
from services.common.tracing.ids import current_trace_id
from services.common.tracing.sampler import ServerRootsOnly, configured_sampler
from services.common.tracing.setup import exporter, wanted

TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"])
TRACE_ID, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01".encode()


@pytest.mark.parametrize("peer, trusted", [
    ("10.1.2.3", True), ("127.0.0.1", True), ("::ffff:127.0.0.1", True),
    ("2001:db8::1", True), ("127.0.0.2", False), ("192.168.1.1", False),
    ("2001:db9::1", False), (None, False), ("", False), ("not-an-address", False),
    ("1" * 100, False),
])
def test_only_a_peer_inside_the_trusted_proxies_is_trusted(peer, trusted) -> None:
    assert trusted_peer(peer, TRUSTED) is trusted


def test_no_trusted_proxies_trust_nobody() -> None:
    assert not trusted_peer("127.0.0.1", ())


def test_a_trusted_proxy_s_traceparent_is_continued() -> None:
    headers = [(b"traceparent", TRACEPARENT), (b"tracestate", b"vendor=1")]
    context = incoming_context(headers, "10.0.0.7", TRUSTED)
    parent = trace.get_current_span(context).get_span_context()
    assert format(parent.trace_id, "032x") == TRACE_ID
    assert format(parent.span_id, "016x") == PARENT
    assert parent.is_remote and parent.trace_flags.sampled
    assert parent.trace_state.get("vendor") == "1"


@pytest.mark.parametrize("headers, peer", [
    ([(b"traceparent", TRACEPARENT)], "203.0.113.9"),     # not a trusted proxy
    ([(b"traceparent", TRACEPARENT)], None),
    ([(b"traceparent", b"00-zz-yy-01")], "10.0.0.7"),     # malformed: a new trace
    ([(b"traceparent", f"00-{'0' * 32}-{PARENT}-01".encode())], "10.0.0.7"),  # invalid id
    ([(b"x-request-id", b"abc")], "10.0.0.7"),             # none sent
])
def test_any_other_request_starts_a_new_trace(headers, peer) -> None:
    assert incoming_context(headers, peer, TRUSTED) is None


def test_the_exemplar_names_a_recorded_trace_only() -> None:
    sampled = NonRecordingSpan(SpanContext(int(TRACE_ID, 16), int(PARENT, 16), False,
                                           TraceFlags(TraceFlags.SAMPLED)))
    dropped = NonRecordingSpan(SpanContext(int(TRACE_ID, 16), int(PARENT, 16), False,
                                           TraceFlags(TraceFlags.DEFAULT)))
    assert RequestSpan(sampled, None).exemplar() == {"trace_id": TRACE_ID}
    assert RequestSpan(dropped, None).exemplar() is None


def _line(formatter: logging.Formatter) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("test.tracing")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("hello", extra={"key": "value"})
    return stream.getvalue().strip()


def test_log_lines_carry_the_trace_id_while_a_span_is_active() -> None:
    tracer = TracerProvider().get_tracer("test")
    assert current_trace_id() is None
    assert "trace_id" not in json.loads(_line(JsonFormatter("svc")))
    assert "trace_id=" not in _line(TextFormatter("svc"))
    with tracer.start_as_current_span("request") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        entry = json.loads(_line(JsonFormatter("svc")))
        text = _line(TextFormatter("svc"))
    assert entry["trace_id"] == trace_id and entry["key"] == "value"
    assert f"trace_id={trace_id}" in text
    assert current_trace_id() is None


def _decision(sampler, *, kind: SpanKind, parent: SpanContext | None = None) -> Decision:
    context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
    return sampler.should_sample(context, int(TRACE_ID, 16), "span", kind).decision


def test_only_a_server_span_may_start_a_trace() -> None:
    sampler = ServerRootsOnly(ParentBased(ALWAYS_ON))
    assert _decision(sampler, kind=SpanKind.SERVER).is_sampled()
    for kind in (SpanKind.CLIENT, SpanKind.INTERNAL):
        assert not _decision(sampler, kind=kind).is_sampled()
    sampled = SpanContext(int(TRACE_ID, 16), int(PARENT, 16), True,
                          TraceFlags(TraceFlags.SAMPLED))
    dropped = SpanContext(int(TRACE_ID, 16), int(PARENT, 16), True,
                          TraceFlags(TraceFlags.DEFAULT))
    assert _decision(sampler, kind=SpanKind.CLIENT, parent=sampled).is_sampled()
    assert not _decision(sampler, kind=SpanKind.SERVER, parent=dropped).is_sampled()


@pytest.mark.parametrize("environ, description", [
    ({}, "ParentBased{root:AlwaysOnSampler"),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
     "ParentBased{root:TraceIdRatioBased{0.01}"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
     "ServerRootsOnly{TraceIdRatioBased{0.0}}"),
    ({"OTEL_TRACES_SAMPLER": "always_off"}, "AlwaysOffSampler"),
])
def test_the_sampler_is_the_one_the_settings_name(environ, description) -> None:
    sampler = configured_sampler(environ)
    assert isinstance(sampler, ServerRootsOnly)
    assert description in sampler.get_description()


@pytest.mark.parametrize("environ", [
    {"OTEL_TRACES_SAMPLER": "sometimes"},
    {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
    {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
])
def test_a_sampler_setting_it_cannot_use_stops_the_process(environ) -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER"):
        configured_sampler(environ)


ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}


@pytest.mark.parametrize("environ, on", [
    ({}, False),
    (ENDPOINT, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
    ({**ENDPOINT, "OTEL_SDK_DISABLED": "false"}, True),
    ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
])
def test_traces_are_off_unless_an_endpoint_is_set(environ, on) -> None:
    assert wanted(environ) is on


def test_the_exporter_speaks_the_protocol_the_settings_name() -> None:
    grpc = exporter({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    http = exporter({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    default = exporter(ENDPOINT)
    assert "grpc" in type(grpc).__module__ and "http" in type(http).__module__
    assert type(default) is type(http)  # the specification's default
    for instance in (grpc, http, default):
        instance.shutdown()
    with pytest.raises(ValueError, match="PROTOCOL"):
        exporter({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        wanted({**ENDPOINT, "OTEL_TRACES_EXPORTER": "zipkin"})


def test_exemplars_appear_in_openmetrics_only() -> None:
    metrics.LATENCY.labels("/exemplar-test", "GET").observe(0.3, {"trace_id": TRACE_ID})
    try:
        plain, plain_type = metrics.render("text/plain")
        open_metrics, open_type = metrics.render("application/openmetrics-text; version=1.0.0")
    finally:  # the registry is the process's: leave no series behind for other tests
        metrics.LATENCY.remove("/exemplar-test", "GET")
    assert plain_type.startswith("text/plain") and TRACE_ID.encode() not in plain
    assert open_type.startswith("application/openmetrics-text")
    assert f'# {{trace_id="{TRACE_ID}"}} 0.3'.encode() in open_metrics
    assert metrics.render(None)[1] == plain_type
