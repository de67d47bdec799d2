"""Turns traces on, from the standard OTEL_* settings only, or leaves them off.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, and
always off with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none. Off means that no SDK
provider is installed at all: every span asked of the API is its no-op span, and our own hooks
check `state.active()` and skip their work. On, the SDK's provider exports in batches (a thread
of its own, OTEL_BSP_* tunes it) over OTLP, gRPC or http/protobuf (OTEL_EXPORTER_OTLP_PROTOCOL, the
specification's default http/protobuf); the exporter reads its endpoint, headers, certificates
and timeout from the usual OTEL_EXPORTER_OTLP_* settings itself. OTEL_SERVICE_NAME names the
process (default portico-gateway, portico-order, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from services.common.tracing import state

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

PROTOCOLS = ("grpc", "http/protobuf")
_provider: TracerProvider | None = None


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the settings ask for traces."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if exporter == "none":
        return False
    if exporter != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER {exporter!r}: only otlp (or none) is supported")
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


def configure(default_name: str, environ: Mapping[str, str] | None = None
              ) -> TracerProvider | None:
    """Installs the SDK's provider when the settings ask for traces (once per process) and
    returns it; None when traces are off. ValueError names a setting it cannot use."""
    global _provider
    environ = os.environ if environ is None else environ
    if _provider is not None or not wanted(environ):
        return _provider
    # The SDK is loaded only now: a process with traces off never imports it.
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from services.common.tracing.sampler import configured_sampler

    # OTEL_SERVICE_NAME, when given, wins: Resource.create lets given attributes override it.
    named = {} if environ.get("OTEL_SERVICE_NAME", "").strip() else {SERVICE_NAME: default_name}
    provider = TracerProvider(resource=Resource.create(named),
                              sampler=configured_sampler(dict(environ)))
    provider.add_span_processor(BatchSpanProcessor(exporter(environ)))
    trace.set_tracer_provider(provider)
    _provider = provider
    state.switch_on()
    return provider


def exporter(environ: Mapping[str, str]) -> SpanExporter:
    """The OTLP exporter of the protocol the settings name."""
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() or "http/protobuf")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not one of "
                         f"{', '.join(PROTOCOLS)}")
    return OTLPSpanExporter()

