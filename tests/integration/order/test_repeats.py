"""The order store's steps repeated as its failover retry repeats them after a commit whose
answer was lost: a claim finds its own order, a confirmation its own confirmation, and neither
writes anything twice."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from services.order.models import NewOrder, OrderLine
from services.order.store import OrderStore

from .support import Stack, unique

LINE = OrderLine(product_id="P1", name="Widget", quantity=2, unit_price=Decimal("1.50"),
                 line_total=Decimal("3.00"))


@pytest.mark.parametrize("key", ["", "repeat-key"])
async def test_a_repeated_claim_finds_its_own_order(stack: Stack, key: str) -> None:
    store = OrderStore(stack.engine)
    new = NewOrder(customer=unique("c"), items=(("P1", 2),), token="tok_visa",
                   idempotency_key=key)
    order_id = uuid.uuid4().hex
    first = await store.claim(new, order_id=order_id, request_hash="h", currency="USD")
    again = await store.claim(new, order_id=order_id, request_hash="h", currency="USD")
    assert first == again and again.created and again.order_id == order_id
    other = await store.claim(new, order_id=uuid.uuid4().hex, request_hash="h", currency="USD")
    if key:   # another request under the key finds the first order, not made by it
        assert other.order_id == order_id and not other.created
    assert len(await stack.order_rows(new.customer)) == (1 if key else 2)


async def test_a_repeated_confirmation_finds_its_own(stack: Stack) -> None:
    store = OrderStore(stack.engine)
    new = NewOrder(customer=unique("c"), items=(("P1", 2),), token="tok_visa")
    claim = await store.claim(new, order_id=uuid.uuid4().hex, request_hash="h", currency="USD")
    for _ in range(2):
        assert await store.confirm(claim.order_id, lines=[LINE], total=Decimal("3.00"),
                                   payment_reference="ch_1")
    assert not await store.confirm(claim.order_id, lines=[LINE], total=Decimal("3.00"),
                                   payment_reference="ch_other")
    order = await store.get(claim.order_id)
    assert order.status == "confirmed" and len(order.items) == 1
