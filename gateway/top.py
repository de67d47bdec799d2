"""`portico top`: a running gateway at a glance in a terminal, redrawn every second.

It reads the gateway's /metrics (and /admin/upstreams when given an admin token) like any
scraper, so it works against any gateway it can reach, one process or several. Rates and
percentiles are taken between two scrapes, so they describe the last interval only; the
"since start" column is the counters' own totals. Probes, scrapes and this view's own calls are
left out of the traffic figures. Two scrapes are all it keeps: its memory stays flat however
long it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

from gateway.topview import Frame, render

# Probes, scrapes and this view's own calls: not the traffic a person wants to see.
OWN_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/admin/upstreams"})
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a gateway's scrape is tens of KiB; anything else is wrong
CLEAR = "\x1b[H\x1b[2J"
BREAKER_STATES = {0.0: "closed", 1.0: "half-open", 2.0: "open"}  # portico_breaker_state
# The codes that count against a breaker (gateway/upstream/call.py's SERVER_SIDE, by name: this
# view stays clear of grpc): a NOT_FOUND is an answer, not an instance failing.
FAILURES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "UNKNOWN"})

Labels = tuple[tuple[str, str], ...]
Where = Callable[[dict[str, str]], bool]


def _traffic(labels: dict[str, str]) -> bool:
    return labels.get("route") not in OWN_ROUTES


def _status_class(digit: str) -> Where:
    return lambda labels: _traffic(labels) and labels.get("status", "")[:1] == digit


def _label(key: str, value: str) -> Where:
    return lambda labels: labels.get(key) == value


@dataclass(frozen=True)
class Scrape:
    """One reading of /metrics: every sample by name and labels, and when it was taken."""

    at: float
    samples: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str, at: float) -> Scrape:
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in text_string_to_metric_families(text)
                   for sample in family.samples}
        return cls(at, samples)


NOTHING = Scrape(0.0, {})  # before the gateway started: every counter at zero


class Change:
    """What the counters did between two scrapes, and the gauges at the second."""

    def __init__(self, before: Scrape, after: Scrape) -> None:
        self.before, self.after = before, after
        self.seconds = after.at - before.at

    def increase(self, name: str, where: Where | None = None) -> float:
        return sum(value for labels, value in self._values(name) if where is None or where(labels))

    def by(self, name: str, *keys: str, increase: bool = True,
           where: Where | None = None) -> dict[tuple[str, ...], float]:
        """The increases (or, for a gauge, the values) of `name` summed by the labels `keys`."""
        sums: dict[tuple[str, ...], float] = {}
        for labels, value in self._values(name, increase=increase):
            if where is not None and not where(labels):
                continue
            key = tuple(labels.get(k, "") for k in keys)
            sums[key] = sums.get(key, 0.0) + value
        return sums

    def _values(self, name: str, *, increase: bool = True
                ) -> Iterator[tuple[dict[str, str], float]]:
        for (sample, labels), value in self.after.samples.items():
            if sample == name:
                if increase:
                    old = self.before.samples.get((sample, labels), 0.0)
                    value = value - old if value >= old else value  # lower: it restarted
                yield dict(labels), value

    def quantile(self, q: float, where: Where | None = None) -> float | None:
        """The q-quantile of request durations in seconds, interpolated within buckets as
        Prometheus' histogram_quantile does; None without requests."""
        counts = self.by("portico_http_request_duration_seconds_bucket", "le", where=where)
        buckets = sorted((float(le), n) for (le,), n in counts.items() if le)
        if not buckets or buckets[-1][1] <= 0:
            return None
        rank = q * buckets[-1][1]
        lower, below = 0.0, 0.0
        for upper, count in buckets:
            if count >= rank:
                if upper == float("inf"):
                    return lower  # beyond the last finite bucket: its bound is all we know
                if count == below:
                    return upper
                return lower + (upper - lower) * (rank - below) / (count - below)
            lower, below = upper, count
        return lower


def figures(change: Change) -> dict[str, float | None]:
    """The gateway's figures over one change: counts, and the latency percentiles."""
    requests = "portico_http_requests_total"
    lookups = change.by("portico_cache_lookups_total", "outcome")
    return {
        "requests": change.increase(requests, _traffic),
        "5xx": change.increase(requests, _status_class("5")),
        "4xx": change.increase(requests, _status_class("4")),
        "p50": change.quantile(0.5, _traffic),
        "p99": change.quantile(0.99, _traffic),
        "cache hits": lookups.get(("hit",), 0.0),
        "cache lookups": sum(lookups.values()),
        "shed": change.increase(requests, _label("route", "shed")),
        "denials": change.increase("portico_rate_limit_decisions_total",
                                   _label("decision", "deny")),
        "redis errors": change.increase("portico_redis_errors_total"),
        "redis up": change.after.samples.get(("portico_redis_up", ())),
    }


def instances(now: Change, since: Change, admin: dict | None) -> list[dict]:
    """Each upstream instance: health and breaker (from /admin/upstreams when given, else the
    gauges), and its calls over the last interval and since start."""
    healthy = now.by("portico_upstream_healthy", "service", "instance", increase=False)
    breaker = now.by("portico_breaker_state", "service", "instance", increase=False)
    calls = now.by("portico_upstream_calls_total", "service", "instance", "code")
    totals = since.by("portico_upstream_calls_total", "service", "instance")
    rows: dict[tuple[str, str], dict] = {}
    for key in sorted(set(healthy) | set(breaker) | set(totals)):
        state = breaker.get(key)
        rows[key] = {"service": key[0], "instance": key[1], "healthy": healthy.get(key),
                     "breaker": None if state is None else BREAKER_STATES.get(state, "?")}
    for service, members in (admin or {}).items():
        for member in members:
            rows[(service, member["address"])] = {
                "service": service, "instance": member["address"],
                "healthy": float(member["healthy"]), "breaker": member["breaker"]}
    for (service, address), row in sorted(rows.items()):
        mine = {code: n for (s, a, code), n in calls.items() if (s, a) == (service, address)}
        row["calls"] = sum(mine.values())
        row["failed"] = sum(n for code, n in mine.items() if code in FAILURES)
        row["total"] = totals.get((service, address), 0.0)
    return [rows[key] for key in sorted(rows)]


class Gateway:
    """The gateway's HTTP endpoints this view reads."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 2.0,
                 insecure: bool = False) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout
        self._context = ssl._create_unverified_context() if insecure else None

    def scrape(self) -> Scrape:
        return Scrape.parse(self._get("/metrics").decode(), time.monotonic())

    def upstreams(self) -> tuple[dict | None, str]:
        """/admin/upstreams, and where the instances' health and breaker state come from."""
        if not self.token:
            return None, ("health and breaker from /metrics (an admin token in --token or "
                          "PORTICO_TOKEN reads /admin/upstreams)")
        try:
            view = json.loads(self._get("/admin/upstreams", admin=True))
        except urllib.error.HTTPError as error:
            return None, f"/admin/upstreams answered {error.code}: health and breaker from " \
                "/metrics"
        return view, "health and breaker from /admin/upstreams"

    def _get(self, path: str, *, admin: bool = False) -> bytes:
        headers = {"Authorization": f"Bearer {self.token}"} if admin else {}
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout,
                                    context=self._context) as answer:
            body = answer.read(MAX_ANSWER_BYTES + 1)
        if len(body) > MAX_ANSWER_BYTES:
            raise ValueError(f"{path} answered more than {MAX_ANSWER_BYTES} bytes")
        return body


def run(gateway: Gateway, *, interval: float, once: bool, out: IO[str], colour: bool) -> int:
    """Scrapes every `interval` seconds and redraws; with `once`, prints one frame (after two
    scrapes `interval` apart, so that the rates mean something) and returns."""
    before: Scrape | None = None
    while True:
        started = time.monotonic()
        try:
            after = gateway.scrape()
            admin, source = gateway.upstreams()
        except (OSError, ValueError) as error:  # URLError is an OSError
            if once:
                print(f"portico top: cannot read {gateway.url}: {error}", file=sys.stderr)
                return 1
            out.write(f"{CLEAR}portico top: cannot read {gateway.url}: {error}; trying again\n")
            out.flush()
            before = None
        else:
            if before is not None:
                now, since = Change(before, after), Change(NOTHING, after)
                frame = Frame(url=gateway.url, seconds=now.seconds, now=figures(now),
                              since=figures(since), instances=instances(now, since, admin),
                              source=source)
                out.write(("" if once else CLEAR) + render(frame, colour=colour))
                out.flush()
                if once:
                    return 0
            before = after
        time.sleep(max(0.0, started + interval - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portico top", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the gateway")
    parser.add_argument("--token", default=os.environ.get("PORTICO_TOKEN"),
                        help="an admin's bearer token, for /admin/upstreams "
                        "(default: PORTICO_TOKEN)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify the gateway's TLS certificate")
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    gateway = Gateway(args.url, args.token, insecure=args.insecure)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        return run(gateway, interval=args.interval, once=args.once, out=sys.stdout,
                   colour=colour)
    except KeyboardInterrupt:
        print()
        return 0


if __name__ == "__main__":
    sys.exit(main())
