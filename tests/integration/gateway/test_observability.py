"""A gateway process (`python -m gateway`) in front of a gRPC server in this process and a Redis
of its own, after known traffic: cache hits, a shed request, rate-limit denials, 5xx answers, a
breaker that opens, Redis stopped. Then every metric and label the dashboard and the alert rules
read must be in its /metrics, and `portico top --once` must print the figures of that traffic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client.parser import text_string_to_metric_families

from portico.product.v1 import product_pb2, product_pb2_grpc
from scripts.devstack.redis_server import RedisServer
from scripts.devstack.servers import find_free_port
from tests.integration.gateway.conftest import make_token
from tests.promql import RENAMED, TARGET_LABELS, dashboard_expressions, rule_expressions, uses
from tests.trust import serve, session_state_dir

PORTICO = str(Path(sys.executable).parent / "portico")
NO_CACHE = {"Cache-Control": "no-cache"}
DOWN = "127.0.0.1:1"  # a product instance that refuses every connection


class Products(product_pb2_grpc.ProductServiceServicer):
    """GetProduct: SLOW takes a second, FAIL is UNAVAILABLE, any other id exists."""

    async def GetProduct(self, request, context):
        if request.id == "SLOW":
            await asyncio.sleep(1.0)
        if request.id == "FAIL":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")
        return product_pb2.GetProductResponse(product=product_pb2.Product(
            id=request.id, name="thing", price="1.00", stock=1))


@dataclass
class Observed:
    url: str
    address: str           # the gRPC server's
    token: str             # an admin's
    statuses: list[int]    # of the known traffic, in order


@contextlib.asynccontextmanager
async def gateway_process(env: dict[str, str], log: Path) -> AsyncIterator[str]:
    """`python -m gateway` on a free port, ready (/readyz 200); SIGTERM on the way out."""
    port = find_free_port()
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--port", str(port), env=env,
            stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for _ in range(300):
                assert process.returncode is None, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the gateway never became ready:\n{log.read_text()}")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def known_traffic(http: httpx.AsyncClient, redis: RedisServer) -> list[int]:
    statuses = [(await http.get("/products/P1")).status_code for _ in range(10)]  # 1 miss, 9 hits
    # Two slow requests fill PORTICO_MAX_IN_FLIGHT=2: the next one is shed.
    slow = [asyncio.create_task(http.get("/products/SLOW", headers=NO_CACHE)) for _ in range(2)]
    await asyncio.sleep(0.4)
    shed = await http.get("/products/P2")
    statuses += [(await request).status_code for request in slow] + [shed.status_code]
    login = {"email": "someone@example.com", "password": "not-the-password"}
    statuses += [(await http.post("/auth/login", json=login)).status_code for _ in range(7)]
    redis.stop()  # rate limits fall back to the process, the cache is bypassed
    statuses += [(await http.get("/products/P1")).status_code for _ in range(2)]
    # Last, since it opens the breaker of the one healthy product instance.
    statuses += [(await http.get("/products/FAIL")).status_code for _ in range(3)]
    return statuses


@pytest.fixture(scope="module")
async def observed(signing_key, tmp_path_factory) -> AsyncIterator[Observed]:
    tmp = tmp_path_factory.mktemp("observed")
    running = await serve([(product_pb2_grpc.add_ProductServiceServicer_to_server,
                             Products(), "portico.product.v1.ProductService")])
    for name in ("portico.user.v1.UserService", "portico.order.v1.OrderService"):
        await running.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"127.0.0.1:{running.port}"
    redis = RedisServer(tmp / "redis").start()
    env = {**os.environ, "PORTICO_USER_ADDRS": address, "PORTICO_ORDER_ADDRS": address,
           "PORTICO_PRODUCT_ADDRS": f"{address},{DOWN}", "PORTICO_REDIS_URL": redis.url,
           "PORTICO_JWT_PUBLIC_KEY_FILE": str(signing_key[1]),
           "PORTICO_STATE_DIR": str(session_state_dir()),
           "PORTICO_MAX_IN_FLIGHT": "2", "PORTICO_RETRY_MAX_ATTEMPTS": "2",
           "PORTICO_BREAKER_FAILURE_THRESHOLD": "2",
           "PORTICO_BREAKER_RESET_TIMEOUT_SECONDS": "300",
           "PORTICO_HEALTH_CHECK_INTERVAL_SECONDS": "0.2", "PORTICO_REDIS_TIMEOUT_SECONDS": "1"}
    try:
        async with gateway_process(env, tmp / "gateway.log") as url, \
                httpx.AsyncClient(base_url=url, timeout=10) as http:
            statuses = await known_traffic(http, redis)
            yield Observed(url, address, make_token(signing_key[0], "admin-1", role="admin"),
                           statuses)
    finally:
        redis.stop()
        await running.stop(0)


def test_the_known_traffic_was_answered_as_planned(observed: Observed) -> None:
    # The user service is not there (UNIMPLEMENTED, 501) but its rate limit is: 5 tries, then
    # 429. The first FAIL is tried twice and opens the breaker; then no instance is usable.
    assert observed.statuses == [200] * 10 + [200, 200, 503] + [501] * 5 + [429] * 2 \
        + [200, 200] + [503] * 3


async def test_every_metric_and_label_the_dashboard_and_rules_read_is_exported(
        observed: Observed) -> None:
    async with httpx.AsyncClient(base_url=observed.url) as http:
        text = (await http.get("/metrics")).text
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    for where, expr in dashboard_expressions() + rule_expressions():
        used = uses(expr)
        assert used.metrics <= exported.keys(), f"{where}: {used.metrics - exported.keys()}"
        for metric, labels in used.matched.items():
            assert _known(labels, exported[metric]), f"{where}: {metric}{{{labels}}}"
        readable = set().union(*(exported[metric] for metric in used.metrics))
        assert _known(used.grouped, readable), f"{where}: by ({used.grouped})"


def _known(labels: set[str], exported: set[str]) -> bool:
    """Whether Prometheus would store these labels on a series with `exported` labels."""
    return all(label in TARGET_LABELS or label in exported
               or RENAMED.get(label) in exported for label in labels)


async def _top(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        PORTICO, "top", *args, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, output.decode()


def _row(frame: str, label: str) -> list[str]:
    line = next(line for line in frame.splitlines() if line.startswith(label + "  "))
    return line[len(label):].split()


async def test_top_once_prints_the_figures_of_the_known_traffic(observed: Observed) -> None:
    code, frame = await _top("--once", "--interval", "0.5", "--url", observed.url,
                             env={"PORTICO_TOKEN": observed.token})
    assert code == 0, frame
    assert "\x1b[" not in frame  # not a terminal: no colour, no clearing
    assert _row(frame, "requests") == ["0.0/s", "25"]
    assert _row(frame, "errors 5xx") == ["-", "9", "(36.0%)"]  # shed, five 501s, three FAILs
    assert _row(frame, "errors 4xx") == ["-", "2", "(8.0%)"]
    assert _row(frame, "shed") == ["0.0/s", "1"]
    assert _row(frame, "rate-limit denials") == ["0.0/s", "2"]
    assert _row(frame, "redis")[0] == "DOWN" and _row(frame, "redis errors")[-1] != "0"
    hits, lookups = 9, 17  # P1: 1 miss 9 hits; SLOW: 2 misses; bypassed: 2 P1, 3 FAIL
    assert _row(frame, "cache hit ratio") == ["-", f"{100 * hits / lookups:.1f}%"]
    p50, unit = _row(frame, "latency p50")[-2:]
    assert unit == "ms" and 0 < float(p50) < 1000
    assert _row(frame, f"product  {observed.address}")[:2] == ["up", "open"]
    assert _row(frame, f"product  {DOWN}")[:2] == ["DOWN", "closed"]
    assert _row(frame, f"user     {observed.address}")[:2] == ["up", "closed"]
    # Redis is down: no admin rights can be verified, so /admin/upstreams is refused (503)
    # and the view falls back on /metrics for the instances, as it says.
    assert frame.rstrip().endswith(
        "/admin/upstreams answered 503: health and breaker from /metrics")


async def test_top_counts_the_traffic_of_its_interval(observed: Observed) -> None:
    async def traffic() -> None:
        async with httpx.AsyncClient(base_url=observed.url) as http:
            for _ in range(40):
                await http.get("/nowhere")
                await asyncio.sleep(0.05)

    running = asyncio.create_task(traffic())
    code, frame = await _top("--once", "--url", observed.url)
    await running
    assert code == 0, frame
    rate, total = _row(frame, "requests")
    assert float(rate.removesuffix("/s")) > 5 and int(total) > 25
    assert _row(frame, "errors 4xx")[0] == "100.0%"
    # Without a token: the instances from /metrics alone.
    assert _row(frame, f"product  {observed.address}")[:2] == ["up", "open"]
    assert "health and breaker from /metrics" in frame


async def test_top_says_when_the_gateway_cannot_be_read() -> None:
    code, output = await _top("--once", "--url", f"http://127.0.0.1:{find_free_port()}")
    assert code == 1 and "portico top: cannot read" in output
