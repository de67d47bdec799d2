"""Distributed traces end to end: the real stack exports over OTLP to a receiver this test runs
on loopback (scripts/devstack/otlp.py, decoding the real OTLP protobuf messages), and an order
placed through the gateway is one whole trace across the gateway, order, user and product
services. Also: sampled-out requests leave no span, a traceparent is continued only from a
trusted proxy, OTLP over HTTP works too, the log lines carry the trace id, and /metrics in
OpenMetrics links the latency histogram to traces."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.devstack.otlp import OtlpReceiver, ReceivedSpan
from scripts.devstack.postgres import drop_database
from scripts.devstack.stack import Stack
from tests.e2e.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    bearer,
    login,
    redis_db,
    start_stack,
)

SERVICES = {"portico-gateway", "portico-order", "portico-user", "portico-product"}
SAGA = ("order.check_customer", "order.claim", "order.reserve", "order.charge", "order.commit")
SERVER, CLIENT = 2, 3  # OTLP's Span.SpanKind values
# The test client's own address is the trusted proxy; 127.0.0.2 is a client like any other.
TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.2"


class Traced:
    """The stack, its receiver, and gateways beside its own with other settings."""

    def __init__(self, stack: Stack, receiver: OtlpReceiver, logs: Path) -> None:
        self.stack, self.receiver, self.logs = stack, receiver, logs
        self.over_http = stack.add_gateway("gateway-http", {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint})
        self.ratio_zero = stack.add_gateway("gateway-ratio0", {"OTEL_TRACES_SAMPLER_ARG": "0"})

    def trace(self, trace_id: str, *, until: tuple[str, ...] = ()) -> list[ReceivedSpan]:
        """The spans of one trace, once the named spans (and a root) have arrived."""
        def complete(spans: list[ReceivedSpan]) -> bool:
            mine = [s for s in spans if s.trace_id == trace_id]
            names = {s.span.name for s in mine}
            return any(not s.parent_id for s in mine) and all(n in names for n in until)
        spans = self.receiver.wait_for(complete, settle=1.0)
        return [s for s in spans if s.trace_id == trace_id]

    def trace_of(self, request_id: str, *, until: tuple[str, ...] = ()) -> list[ReceivedSpan]:
        """The trace whose root carries this request id."""
        def rooted(spans: list[ReceivedSpan]) -> bool:
            return any(s.attributes.get("portico.request_id") == request_id for s in spans)
        spans = self.receiver.wait_for(rooted)
        root = next(s for s in spans if s.attributes.get("portico.request_id") == request_id)
        return self.trace(root.trace_id, until=until)

    def marker(self, client: httpx.Client, product: str) -> None:
        """A sampled request after the ones under test: once its gateway and product spans
        are in, anything the earlier requests exported (each process exports in order) is in
        too."""
        request_id = f"marker-{uuid.uuid4().hex}"
        client.get(f"/products/{product}", headers={"X-Request-ID": request_id,
                                                    "Cache-Control": "no-cache"})
        self.trace_of(request_id, until=("portico.product.v1.ProductService/GetProduct",))


@pytest.fixture(scope="module")
def traced(tmp_path_factory, pg_url: str, redis_url: str, mongo_uri: str) -> Iterator[Traced]:
    receiver = OtlpReceiver().start()
    tmp = tmp_path_factory.mktemp("tracing")
    stack, name = start_stack(tmp, pg_url=pg_url, redis_url=redis_db(redis_url, 6),
                              mongo_uri=mongo_uri, env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "PORTICO_TRUSTED_PROXIES": f"{TRUSTED}/32",
        "PORTICO_LOG_FORMAT": "json",
    })
    try:
        yield Traced(stack, receiver, tmp / "logs")
    finally:
        stack.stop()
        receiver.stop()
        drop_database(pg_url, name)


@pytest.fixture(scope="module")
def api(traced: Traced) -> Iterator[httpx.Client]:
    with client(traced.stack.gateway_url, TRUSTED) as api:
        yield api


@pytest.fixture(scope="module")
def shop(api: httpx.Client) -> dict[str, str]:
    """A product with stock, and a customer's token."""
    admin = bearer(login(api, ADMIN_EMAIL, ADMIN_PASSWORD))
    product = api.post("/products", headers=admin, json={"name": "Traced", "price": "2.50",
                                                          "stock": 100})
    assert product.status_code == 201, product.text
    email = f"traced-{uuid.uuid4().hex[:8]}@example.com"
    assert api.post("/users", json={"name": "Trace Customer", "email": email,
                                    "password": PASSWORD}).status_code == 201
    return {"product": product.json()["id"], "token": login(api, email, PASSWORD)}


def client(url: str, source: str) -> httpx.Client:
    """A client whose connections come from `source` (a loopback address)."""
    return httpx.Client(base_url=url, timeout=30,
                        transport=httpx.HTTPTransport(local_address=source))


def place(api: httpx.Client, shop: dict[str, str], request_id: str, token: str) -> httpx.Response:
    return api.post("/orders", headers={**bearer(shop["token"]), "X-Request-ID": request_id},
                    json={"items": [{"product_id": shop["product"], "quantity": 1}],
                          "payment": {"token": token}})


def assert_whole(spans: list[ReceivedSpan]) -> ReceivedSpan:
    """One trace id, one root, every parent in the trace; the root."""
    assert len({s.trace_id for s in spans}) == 1
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_id]
    assert len(roots) == 1, [s.span.name for s in roots]
    orphans = [s.span.name for s in spans if s.parent_id and s.parent_id not in ids]
    assert not orphans, orphans
    return roots[0]


def under(spans: list[ReceivedSpan], ancestor: ReceivedSpan) -> list[ReceivedSpan]:
    """The spans below `ancestor`."""
    by_id = {s.span_id: s for s in spans}

    def descends(span: ReceivedSpan) -> bool:
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            if span is ancestor:
                return True
        return False
    return [s for s in spans if descends(s)]


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.span.name == name]
    assert found, f"no span {name}; have {sorted({s.span.name for s in spans})}"
    return found[0]


def is_db(span: ReceivedSpan, system: str) -> bool:
    attributes = span.attributes
    return system in (attributes.get("db.system"), attributes.get("db.system.name"))


def test_an_order_is_one_trace_across_every_service(traced: Traced, api, shop) -> None:
    request_id = f"order-{uuid.uuid4().hex}"
    answer = place(api, shop, request_id, "tok_visa")
    assert answer.status_code == 201, answer.text

    spans = traced.trace_of(request_id, until=SAGA)
    root = assert_whole(spans)
    assert {s.service for s in spans} == SERVICES
    assert root.service == "portico-gateway" and root.span.kind == SERVER
    assert root.span.name == "POST /orders"
    assert root.attributes["portico.request_id"] == request_id
    assert root.attributes["http.route"] == "/orders"
    assert root.attributes["http.response.status_code"] == 201
    named(spans, "edge.ratelimit")
    attempt = named(spans, "portico.order.v1.OrderService/CreateOrder")
    assert attempt.span.kind == CLIENT and attempt.attributes["portico.retry"] == 0
    assert f"{attempt.attributes['server.address']}:{attempt.attributes['server.port']}" \
        in traced.stack.addresses["order"]

    order_server = next(s for s in spans if s.service == "portico-order"
                        and s.span.kind == SERVER)
    assert order_server.parent_id == attempt.span_id
    steps = {name: named(spans, name) for name in SAGA}
    assert all(step.parent_id == order_server.span_id for step in steps.values())
    # The database calls under the steps that make them, and the other services' under theirs.
    assert any(is_db(s, "postgresql") for s in under(spans, steps["order.claim"]))
    assert any(is_db(s, "postgresql") for s in under(spans, steps["order.charge"]))
    assert any(is_db(s, "postgresql") for s in under(spans, steps["order.commit"]))
    user_side = under(spans, steps["order.check_customer"])
    assert any(s.service == "portico-user" and s.span.kind == SERVER for s in user_side)
    assert any(is_db(s, "postgresql") and s.service == "portico-user" for s in user_side)
    stock_side = under(spans, steps["order.reserve"])
    assert any(s.service == "portico-product" and s.span.kind == SERVER for s in stock_side)
    assert any(is_db(s, "mongodb") for s in stock_side)

    # Every log line of the request, in each process it crossed, carries the trace id.
    lines = [json.loads(line) for path in traced.logs.glob("*.log")
             for line in path.read_text().splitlines()
             if line.startswith("{") and request_id in line]
    services = {line["service"] for line in lines if line.get("request_id") == request_id}
    assert {"gateway", "order-service", "user-service", "product-service"} <= services
    assert all(line.get("trace_id") == root.trace_id for line in lines
               if line.get("request_id") == request_id)


def test_an_undone_order_shows_its_compensation(traced: Traced, api, shop) -> None:
    request_id = f"declined-{uuid.uuid4().hex}"
    assert place(api, shop, request_id, "tok_decline").status_code == 402
    spans = traced.trace_of(request_id, until=("order.compensate",))
    assert_whole(spans)
    assert named(spans, "order.charge").span.status.code == 2  # STATUS_CODE_ERROR
    assert any(s.span.name.endswith("ReleaseStock")
               for s in under(spans, named(spans, "order.compensate")))


def test_a_trusted_proxy_s_traceparent_is_continued(traced: Traced, api, shop) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    api.get(f"/products/{shop['product']}", headers={
        "traceparent": f"00-{trace_id}-{parent}-01", "Cache-Control": "no-cache"})
    spans = traced.trace(trace_id, until=("portico.product.v1.ProductService/GetProduct",))
    gateway_root = next(s for s in spans if s.span.kind == SERVER and s.service ==
                        "portico-gateway")
    assert gateway_root.parent_id == parent  # the proxy's span is its parent
    assert any(s.service == "portico-product" for s in spans)


def test_a_sampled_out_request_leaves_no_span(traced: Traced, api, shop) -> None:
    unsampled = uuid.uuid4().hex
    api.get(f"/products/{shop['product']}", headers={
        "traceparent": f"00-{unsampled}-{uuid.uuid4().hex[:16]}-00",
        "Cache-Control": "no-cache"})
    with client(traced.ratio_zero, TRUSTED) as ratio_zero:
        request_id = f"ratio0-{uuid.uuid4().hex}"
        answer = ratio_zero.post("/orders", headers={**bearer(shop["token"]),
                                                     "X-Request-ID": request_id},
                                 json={"items": [{"product_id": shop["product"], "quantity": 1}],
                                       "payment": {"token": "tok_visa"}})
        assert answer.status_code == 201, answer.text
    traced.marker(api, shop["product"])
    spans = traced.receiver.spans()
    assert not [s for s in spans if s.trace_id == unsampled]
    assert not [s for s in spans if s.attributes.get("portico.request_id") == request_id]
    # Nor did any service start a trace of its own for it.
    rpc_lines = [json.loads(line) for path in traced.logs.glob("order-*.log")
                 for line in path.read_text().splitlines() if request_id in line]
    trace_ids = {line.get("trace_id") for line in rpc_lines}
    assert not {s.trace_id for s in spans} & trace_ids


def test_an_untrusted_client_s_traceparent_starts_a_new_trace(traced: Traced, shop) -> None:
    trace_id, request_id = uuid.uuid4().hex, f"untrusted-{uuid.uuid4().hex}"
    with client(traced.stack.gateway_url, UNTRUSTED) as outsider:
        outsider.get(f"/products/{shop['product']}", headers={
            "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01",
            "X-Request-ID": request_id, "Cache-Control": "no-cache"})
    spans = traced.trace_of(request_id)
    root = assert_whole(spans)
    assert root.trace_id != trace_id and root.attributes["client.address"] == UNTRUSTED
    assert not [s for s in traced.receiver.spans() if s.trace_id == trace_id]


def test_otlp_over_http_and_exemplars(traced: Traced, shop) -> None:
    request_id = f"http-{uuid.uuid4().hex}"
    with client(traced.over_http, TRUSTED) as over_http:
        over_http.get(f"/products/{shop['product']}", headers={
            "X-Request-ID": request_id, "Cache-Control": "no-cache"})
        spans = traced.trace_of(request_id, until=("edge.cache",))
        assert {"portico-gateway", "portico-product"} <= {s.service for s in spans}
        assert named(spans, "edge.cache").attributes["portico.cache.outcome"] == "MISS"

        plain = over_http.get("/metrics").text
        open_metrics = over_http.get("/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert f'# {{trace_id="{spans[0].trace_id}"}}' in open_metrics.text
    assert "trace_id" not in plain  # the Prometheus text format has no exemplars
