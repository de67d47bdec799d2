"""Counting stale reads in the read-heavy mix.

A read is stale when it STARTED after a write of that product had been ACKNOWLEDGED and still
returned a value older than that write's. Reads that overlap a write may return either value:
only what was known to be written before the read began is owed to it.

The mix driver makes "older" easy to decide: the prices it writes to one product only go up
(one write per product at a time, each higher than the last), so an older value is a smaller
one, and a read is stale when its value is below the highest value acknowledged before the
read started.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class StaleRead:
    """One stale read, for the report: what was read, and what was owed."""

    product: str
    started: float
    value: Decimal
    owed: Decimal


@dataclass
class StaleReadCounter:
    """Collects acknowledged writes and completed reads (times from one monotonic clock), then
    counts the stale reads once the run is over."""

    _writes: dict[str, list[tuple[float, Decimal]]] = field(
        default_factory=lambda: defaultdict(list))
    _reads: list[tuple[str, Decimal, float]] = field(default_factory=list)

    def acknowledged(self, product: str, value: Decimal, *, completed: float) -> None:
        """A write of `value` to `product` was answered with success at `completed`."""
        self._writes[product].append((completed, value))

    def read(self, product: str, value: Decimal, *, started: float) -> None:
        """A read of `product`, sent at `started`, returned `value`."""
        self._reads.append((product, value, started))

    @property
    def reads(self) -> int:
        return len(self._reads)

    def audit(self) -> tuple[list[StaleRead], int]:
        """Every stale read, in the order the reads were recorded, and how many reads were owed
        a value at all (started after some acknowledged write of their product): the reads
        that could have been stale."""
        history = {product: _History(writes) for product, writes in self._writes.items()}
        found, owing = [], 0
        for product, value, started in self._reads:
            owed = history[product].owed(started) if product in history else None
            if owed is None:
                continue
            owing += 1
            if value < owed:
                found.append(StaleRead(product, started, value, owed))
        return found, owing

    def stale(self) -> list[StaleRead]:
        return self.audit()[0]

    def count(self) -> int:
        return len(self.stale())


class _History:
    """One product's acknowledged writes, by completion time."""

    def __init__(self, writes: list[tuple[float, Decimal]]) -> None:
        ordered = sorted(writes, key=lambda write: write[0])
        self._times = [completed for completed, _ in ordered]
        # The highest value acknowledged up to each write: robust even if two writes of one
        # product were ever acknowledged out of order.
        self._highest: list[Decimal] = []
        for _, value in ordered:
            self._highest.append(max(value, self._highest[-1]) if self._highest else value)

    def owed(self, started: float) -> Decimal | None:
        """The value a read that started at `started` must see at least (None: anything)."""
        index = bisect.bisect_left(self._times, started)  # writes completed strictly before
        return self._highest[index - 1] if index else None
