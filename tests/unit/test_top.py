"""`portico top`'s arithmetic on scrapes: increases (a restarted gateway's counters start
again), percentiles interpolated within buckets as Prometheus does, and the view's own calls
left out of the traffic."""

from __future__ import annotations

import pytest

from gateway.top import FAILURES, NOTHING, Change, Scrape, figures, instances
from gateway.topview import Frame, render
from gateway.upstream.call import SERVER_SIDE


def scrape(at: float, text: str) -> Scrape:
    return Scrape.parse(text, at)


def exposition(ok: int, slow: int, metrics_scrapes: int) -> str:
    """Requests of /products/{id}: `ok` within 10 ms and `slow` within 1 s; and /metrics."""
    api, own = 'route="/products/{id}",method="GET"', 'route="/metrics",method="GET"'
    lines = ["# TYPE portico_http_requests_total counter",
             f'portico_http_requests_total{{{api},status="200"}} {ok + slow}',
             f'portico_http_requests_total{{{own},status="200"}} {metrics_scrapes}',
             "# TYPE portico_http_request_duration_seconds histogram"]
    for labels, counts in ((api, (ok, ok + slow, ok + slow)), (own, (0, 0, metrics_scrapes))):
        lines += [f'portico_http_request_duration_seconds_bucket{{{labels},le="{le}"}} {n}'
                  for le, n in zip(("0.01", "1.0", "+Inf"), counts, strict=True)]
    return "\n".join(lines) + "\n"


def test_rates_and_percentiles_come_from_the_interval_only() -> None:
    before = scrape(10.0, exposition(ok=1000, slow=0, metrics_scrapes=5))
    after = scrape(12.0, exposition(ok=1090, slow=10, metrics_scrapes=7))
    now = figures(Change(before, after))
    assert now["requests"] == 100  # the scrapes of /metrics are not traffic
    assert now["p50"] == pytest.approx(0.01 * 50 / 90)
    assert now["p99"] == pytest.approx(0.01 + 0.99 * (99 - 90) / 10)
    since = figures(Change(NOTHING, after))
    assert since["requests"] == 1100 and since["p99"] == pytest.approx(0.01 * 1089 / 1090)


def test_a_counter_that_went_down_counts_from_zero() -> None:
    before = scrape(0.0, exposition(ok=500, slow=0, metrics_scrapes=0))
    after = scrape(1.0, exposition(ok=30, slow=0, metrics_scrapes=0))  # restarted
    assert figures(Change(before, after))["requests"] == 30


def test_without_requests_there_is_no_percentile_and_the_frame_says_so() -> None:
    quiet = scrape(1.0, exposition(ok=0, slow=0, metrics_scrapes=3))
    now = figures(Change(quiet, quiet))
    assert now["p50"] is None and now["requests"] == 0
    frame = render(Frame(url="http://gw", seconds=1.0, now=now, since=now,
                         instances=instances(Change(quiet, quiet), Change(NOTHING, quiet), None),
                         source="health and breaker from /metrics"))
    assert "latency p50                        -               -" in frame
    assert "no upstream instances in /metrics yet" in frame


def test_the_admin_view_overrides_the_gauges_and_adds_instances() -> None:
    text = """
# TYPE portico_upstream_healthy gauge
portico_upstream_healthy{service="product",instance="a:1"} 1
# TYPE portico_breaker_state gauge
portico_breaker_state{service="product",instance="a:1"} 0
# TYPE portico_upstream_calls_total counter
portico_upstream_calls_total{service="product",instance="a:1",code="OK"} 8
portico_upstream_calls_total{service="product",instance="a:1",code="UNAVAILABLE"} 2
portico_upstream_calls_total{service="product",instance="a:1",code="NOT_FOUND"} 5
"""
    after = scrape(2.0, text)
    admin = {"product": [{"address": "a:1", "healthy": False, "breaker": "half-open"},
                         {"address": "b:2", "healthy": True, "breaker": "closed"}]}
    rows = instances(Change(NOTHING, after), Change(NOTHING, after), admin)
    assert [(r["instance"], r["healthy"], r["breaker"], r["calls"], r["failed"], r["total"])
            for r in rows] == [("a:1", 0.0, "half-open", 15, 2, 15),
                               ("b:2", 1.0, "closed", 0, 0, 0)]


def test_failures_are_the_codes_that_count_against_a_breaker() -> None:
    assert FAILURES == {code.name for code in SERVER_SIDE}
