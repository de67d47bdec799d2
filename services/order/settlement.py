"""Finishing what an order's status implies with the Product service and the processor.

A failed or cancelled order must have its stock released and its charge refunded; a shipped or
delivered order must have its reservation committed. Every one of those calls is idempotent,
so the request that changed the status does them at once, and the reconciler repeats them for
any order whose `settled_at` is still empty (the instance died, or an upstream was down).
"""

from __future__ import annotations

import logging

from services.common.errors import ServiceError
from services.order.models import CANCELLED, DELIVERED, FAILED, SHIPPED
from services.order.payments import PaymentError, PaymentProcessor
from services.order.store import OrderStore
from services.order.upstream import StockKeeper

log = logging.getLogger("portico.order.settlement")

UNDONE = (FAILED, CANCELLED)
SHIPPED_OUT = (SHIPPED, DELIVERED)


class Settlement:
    """Releases and refunds given-up orders; commits the stock of shipped ones."""

    def __init__(self, *, store: OrderStore, stock: StockKeeper,
                 payments: PaymentProcessor) -> None:
        self._store = store
        self._stock = stock
        self._payments = payments

    async def settle(self, order_id: str, status: str) -> None:
        """Does (again, harmlessly, if need be) what `status` implies, then records it done."""
        if status in UNDONE:
            await self.undo(order_id)
            await self._store.mark_settled(order_id, UNDONE)
        elif status in SHIPPED_OUT:
            await self._stock.commit(order_id)
            await self._store.mark_settled(order_id, SHIPPED_OUT)

    async def undo(self, order_id: str) -> None:
        """Refunds the order's charge, if it has one, and gives its reservation back."""
        reference = await self._payments.find_charge(order_id=order_id)
        if reference is not None:
            await self._payments.refund(reference=reference)
        await self._stock.release(order_id)

    async def try_settle(self, order_id: str, status: str) -> bool:
        """settle(), but a failure is logged and left to the reconciler instead of raised."""
        try:
            await self.settle(order_id, status)
        except (ServiceError, PaymentError) as error:
            log.warning("settling an order failed; the reconciler will retry", extra={
                "order_id": order_id, "status": status, "error": str(error)})
            return False
        return True
