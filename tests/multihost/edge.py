"""The gateways' own counters, read from their /metrics (from the client namespace): what
the clients cannot see, such as decisions taken on a process's own bucket, or 5xx answers
a load balancer's retry hid."""

from __future__ import annotations

from tests.multihost.api import samples


async def counters(urls: dict[str, str], source: str) -> dict[str, float]:
    """Summed over the gateways: rate-limit decisions by backend, and 5xx answers."""
    found = {"decisions_redis": 0.0, "decisions_local": 0.0, "answers_5xx": 0.0}
    for url in urls.values():
        for labels, value in await samples(url, "portico_rate_limit_decisions_total", source):
            key = f"decisions_{labels.get('backend')}"
            found[key] = found.get(key, 0.0) + value
        for labels, value in await samples(url, "portico_http_requests_total", source):
            if labels.get("status", "").startswith("5"):
                found["answers_5xx"] += value
    return found


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
