"""Latency percentiles, one definition for every scenario measured in Python."""

from __future__ import annotations

PERCENTILES = (50, 90, 99)


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p90 and p99 (nearest rank) of latencies in milliseconds; 0.0 when there are none."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return {f"p{p}": 0.0 for p in PERCENTILES}
    return {f"p{p}": ordered[min(len(ordered) - 1, max(0, -(-p * len(ordered) // 100) - 1))]
            for p in PERCENTILES}
