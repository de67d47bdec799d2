"""Rate limits across the three gateways on the Redis Cluster: one client hammering the load
balancer (which spreads it over the three gateways) is admitted no more than one bucket's worth,
burst + rate x time (+1%), with the default limits (50/s, burst 100).

The path matches no route: it is limited like any request (and answered 404), and costs the
services nothing, so the client can send well past the rate."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from tests.multihost.api import LOAD_SOURCES, total
from tests.multihost.client import http

RATE, BURST = 50.0, 100      # the gateways' defaults
DURATION, MAX_REQUESTS, WORKERS = 3.0, 3000, 16
SOURCE = LOAD_SOURCES[0]     # an address no other test uses: its bucket starts full


async def hammer(lb_url: str) -> tuple[Counter[int], float]:
    statuses: Counter[int] = Counter()
    sent = 0
    async with http(lb_url, SOURCE, connections=WORKERS, timeout=10) as client:
        started = time.monotonic()

        async def worker() -> None:
            nonlocal sent
            while time.monotonic() - started < DURATION and sent < MAX_REQUESTS:
                sent += 1
                try:
                    statuses[(await client.get("/no-such-route")).status_code] += 1
                except Exception:
                    statuses[0] += 1
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
        return statuses, time.monotonic() - started


async def decisions(urls: dict[str, str], **labels: str) -> dict[str, float]:
    return {host: await total(url, "portico_rate_limit_decisions_total", SOURCE, **labels)
            for host, url in urls.items()}


def test_three_gateways_admit_one_bucket(fleet) -> None:
    urls = fleet.gateway_urls
    before = fleet.client.run(decisions(urls, backend="redis"))
    statuses, elapsed = fleet.client.run(hammer(fleet.lb.url))
    after = fleet.client.run(decisions(urls, backend="redis"))
    local = fleet.client.run(decisions(urls, backend="local"))
    admitted, refused = statuses[404], statuses[429]
    bound = (BURST + RATE * elapsed) * 1.01
    per_gateway = {host: after[host] - before[host] for host in urls}
    fleet.results.record("rate limits across 3 gateways (Redis Cluster)", {
        "requests": sum(statuses.values()), "seconds": elapsed, "admitted": admitted,
        "bound burst+rate*t+1%": bound, "refused_429": refused,
        "statuses": dict(statuses), "shared decisions per gateway": per_gateway,
        "local (fail-open) decisions": local})
    assert set(statuses) <= {404, 429}, statuses
    assert refused > 0, "the bucket never emptied: the load was too light to test the bound"
    assert BURST <= admitted <= bound
    # Every gateway decided some of them, all on the shared buckets.
    assert all(count > 0 for count in per_gateway.values()), per_gateway
    assert sum(local.values()) == 0, local
