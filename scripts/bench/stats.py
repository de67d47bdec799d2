"""Latency percentiles, one definition for every scenario measured in Python."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

PERCENTILES = (50, 90, 99)


def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50, p90 and p99 (nearest rank) of latencies in milliseconds; 0.0 when there are none."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return {f"p{p}": 0.0 for p in PERCENTILES}
    return {f"p{p}": ordered[min(len(ordered) - 1, max(0, -(-p * len(ordered) // 100) - 1))]
            for p in PERCENTILES}


def histogram_percentiles(counts: Mapping[float, int],
                          wanted: Iterable[int] = PERCENTILES) -> dict[int, float]:
    """The same nearest-rank percentiles of latencies given as {value: count}; {} when there
    are none."""
    total = sum(counts.values())
    if not total:
        return {}
    ordered = sorted(counts.items())
    found = {}
    for p in wanted:
        rank, seen = max(1, -(-p * total // 100)), 0
        for value, count in ordered:
            seen += count
            if seen >= rank:
                found[p] = value
                break
    return found
