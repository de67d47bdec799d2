"""UpdateOrder and DeleteOrder: the allowed moves of a placed order.

    confirmed -> shipped -> delivered        (shipping commits the stock reservation)
    confirmed -> cancelled                    (stock released, payment refunded)

Asking for the status an order already has changes nothing and succeeds, so a retried request
is harmless. The shipping address and note can change only while the order is confirmed. Each
decision is taken under the order's row lock, so of two racing cancels (or a ship racing a
cancel) exactly one changes the order and only that one releases and refunds.
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.order.models import CANCELLED, CONFIRMED, DELIVERED, SHIPPED, Order
from services.order.settlement import Settlement
from services.order.store import OrderEdit, OrderStore
from services.order.validation import OrderChange

TRANSITIONS = {CONFIRMED: (SHIPPED, CANCELLED), SHIPPED: (DELIVERED,)}
EDITABLE_FIELDS = ("shipping_address", "note")


def decide_update(order: Order, change: OrderChange) -> OrderEdit:
    """The edit an UpdateOrder request makes to `order`, or FailedPrecondition."""
    status = None
    if change.status is not None and change.status != order.status:
        if change.status not in TRANSITIONS.get(order.status, ()):
            raise FailedPrecondition(
                f"an order that is {order.status} cannot become {change.status}",
                reason="INVALID_TRANSITION", metadata={"from": order.status, "to": change.status})
        status = change.status
    # Fields sent unchanged are not edits: a client may send the whole order back.
    edits = {name: getattr(change, name) for name in EDITABLE_FIELDS
             if getattr(change, name) is not None
             and getattr(change, name) != getattr(order, name)}
    if edits and order.status != CONFIRMED:
        raise FailedPrecondition(
            f"the {' and '.join(edits)} of a {order.status} order cannot change",
            reason="ORDER_NOT_EDITABLE", metadata={"status": order.status})
    return OrderEdit(status=status, **edits)


def decide_delete(order: Order) -> OrderEdit:
    """DeleteOrder cancels a confirmed order and hides it; a shipped one cannot be."""
    if order.status in (SHIPPED, DELIVERED):
        raise FailedPrecondition(f"the order is {order.status} and cannot be cancelled",
                                 reason="ORDER_SHIPPED", metadata={"status": order.status})
    return OrderEdit(status=CANCELLED if order.status == CONFIRMED else None, delete=True)


class OrderLifecycle:
    """Applies updates and deletions, then the side effects of the status they reached."""

    def __init__(self, *, store: OrderStore, settlement: Settlement) -> None:
        self._store = store
        self._settlement = settlement

    async def update(self, order_id: str, *, customer: str, change: OrderChange) -> Order:
        before, after = await self._store.transition(
            order_id, customer=customer, decide=lambda order: decide_update(order, change))
        await self._settle(before, after)
        return after

    async def delete(self, order_id: str, *, customer: str) -> None:
        before, after = await self._store.transition(
            order_id, customer=customer, decide=decide_delete)
        await self._settle(before, after)

    async def _settle(self, before: Order, after: Order) -> None:
        # Only the request whose transition won does the side effects; delivered needs none
        # beyond what shipping did.
        if after.status != before.status and after.status in (SHIPPED, CANCELLED):
            await self._settlement.try_settle(after.id, after.status)
