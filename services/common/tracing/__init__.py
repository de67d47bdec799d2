"""Distributed traces (OpenTelemetry), off unless an OTLP endpoint is configured.

setup.py reads the standard OTEL_* settings and installs the SDK's provider (or nothing at all:
the API's no-op tracer); sampler.py decides which requests are kept; rpc.py gives the gRPC
interceptors, stores.py instruments the stores' clients, spans.py makes the spans of our own
steps, ids.py reads the active trace id for the log lines. Nothing here imports sqlalchemy or
pymongo: only OpenTelemetry's own instrumentations do, switched on from here.
"""
