"""The crash-safety mechanism of the Order service: a reconciler in every instance.

Every `reconcile_interval_seconds` (and once at start) it

1. fails the orders still pending after `order_pending_timeout_seconds`, with
   UPDATE orders SET status = 'failed' WHERE status = 'pending' AND created_at < cutoff: the
   conditional update is the lock, so of several instances exactly one takes each order, and a
   placement that finishes late loses its own conditional confirm and undoes itself;
2. settles every order whose side effects are not recorded as done (`settled_at` is null):
   refunds the charge the processor holds for a failed or cancelled order and releases its
   reservation (NOT_FOUND from the Product service: nothing was reserved), or commits the
   reservation of a shipped one. These calls are idempotent, so repeating them is harmless.

So stock reserved by an instance that crashed before committing is given back at the latest
pending timeout + reconcile interval after the crash, and charged money is refunded with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from services.order.settlement import Settlement
from services.order.store import OrderStore

log = logging.getLogger("portico.order.reconciler")


@dataclass(frozen=True)
class Sweep:
    """What one pass did: the orders it gave up, and how many orders it settled."""

    abandoned: tuple[str, ...]
    settled: int
    unsettled: int


class Reconciler:
    """Gives up abandoned pending orders and finishes unsettled ones, periodically."""

    def __init__(self, *, store: OrderStore, settlement: Settlement, pending_timeout: float,
                 interval: float) -> None:
        self._store = store
        self._settlement = settlement
        self._pending_timeout = pending_timeout
        self._interval = interval
        self._task: asyncio.Task | None = None

    async def run_once(self) -> Sweep:
        abandoned = await self._store.abandon_stale(self._pending_timeout)
        if abandoned:
            log.warning("gave up abandoned orders", extra={"orders": abandoned})
        settled = failed = 0
        for order_id, status in await self._store.unsettled():
            if await self._settlement.try_settle(order_id, status):
                settled += 1
            else:
                failed += 1
        return Sweep(tuple(abandoned), settled, failed)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                # A database outage must not end the loop: the next pass tries again.
                log.exception("reconciliation pass failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name="order-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
