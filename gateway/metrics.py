"""Every Prometheus metric of the gateway, declared up front in one place."""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

REQUESTS = Counter(
    "portico_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "portico_http_request_duration_seconds", "Time to answer an HTTP request", ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
UPSTREAM_CALLS = Counter(
    "portico_upstream_calls_total", "gRPC calls to service instances",
    ["service", "instance", "code"])
UPSTREAM_RETRIES = Counter(
    "portico_upstream_retries_total", "Upstream calls tried again", ["service", "outcome"])
UPSTREAM_HEALTHY = Gauge(
    "portico_upstream_healthy", "1 when the instance's health check says SERVING",
    ["service", "instance"], multiprocess_mode="max")
BREAKER_STATE = Gauge(
    "portico_breaker_state", "Circuit breaker state per instance (0 closed, 1 half-open, 2 open)",
    ["service", "instance"], multiprocess_mode="max")
BREAKER_TRANSITIONS = Counter(
    "portico_breaker_transitions_total", "Circuit breaker state changes",
    ["service", "instance", "state"])
RATE_LIMIT = Counter(
    "portico_rate_limit_decisions_total", "Rate limit decisions",
    ["bucket", "decision", "backend"])
CACHE = Counter(
    "portico_cache_lookups_total", "Response cache outcomes (hit, miss, stale, bypass)",
    ["outcome"])
REDIS_UP = Gauge(
    "portico_redis_up", "1 while the edge's Redis answers, 0 during an outage",
    multiprocess_mode="min")
REDIS_ERRORS = Counter(
    "portico_redis_errors_total", "Redis calls that failed, by the concern that made them",
    ["concern"])

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


@functools.cache
def child(metric, *values: str):
    """`metric.labels(*values)`, looked up once: label values here come from small, fixed sets
    (route templates, instances, codes), and the lookup is a measurable share of a cached GET."""
    return metric.labels(*values)


def forget_instance(service: str, instance: str) -> None:
    """Drops every series of an upstream instance that discovery removed, so the label set
    follows the instances. With several worker processes the series live in their files and
    cannot be removed: the instance is then shown unhealthy instead."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        UPSTREAM_HEALTHY.labels(service=service, instance=instance).set(0)
        return
    labels = {"service": service, "instance": instance}
    for metric in (UPSTREAM_CALLS, UPSTREAM_HEALTHY, BREAKER_STATE, BREAKER_TRANSITIONS):
        metric.remove_by_labels(labels)
    # The memo would hand out the removed children, whose counts no longer show.
    child.cache_clear()


def render(accept: str | None = None) -> tuple[bytes, str]:
    """The exposition text; across every worker process when several share a metrics dir.
    The Prometheus text format, or OpenMetrics when `accept` (the scraper's Accept header) asks
    for it: only OpenMetrics carries the latency histogram's exemplars (trace ids)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # keeps no exemplars (prometheus_client)
    else:
        from prometheus_client import REGISTRY as registry
    if accept and "application/openmetrics-text" in accept:
        encode, content_type = choose_encoder(accept)
        return encode(registry), content_type
    return generate_latest(registry), CONTENT_TYPE_LATEST
