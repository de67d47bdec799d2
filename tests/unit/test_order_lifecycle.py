"""The allowed moves of a placed order, decided without a database."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.common.errors import FailedPrecondition
from services.order.lifecycle import decide_delete, decide_update
from services.order.models import Order
from services.order.store import OrderEdit
from services.order.validation import OrderChange

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def placed(status: str) -> Order:
    return Order(id="o1", customer="u1", status=status, total=Decimal("1.00"), currency="USD",
                 shipping_address="1 Main St", note="", payment_reference="ch_1",
                 created_at=NOW, updated_at=NOW)


@pytest.mark.parametrize("current, target", [
    ("confirmed", "shipped"), ("shipped", "delivered"), ("confirmed", "cancelled")])
def test_allowed_transitions(current, target):
    assert decide_update(placed(current), OrderChange(status=target)) == OrderEdit(status=target)


@pytest.mark.parametrize("current, target", [
    ("confirmed", "delivered"), ("shipped", "cancelled"), ("delivered", "shipped"),
    ("cancelled", "shipped"), ("delivered", "cancelled")])
def test_other_transitions_are_refused(current, target):
    with pytest.raises(FailedPrecondition) as caught:
        decide_update(placed(current), OrderChange(status=target))
    assert caught.value.reason == "INVALID_TRANSITION"
    assert caught.value.metadata == {"from": current, "to": target}


def test_asking_for_the_current_status_changes_nothing():
    assert decide_update(placed("shipped"), OrderChange(status="shipped")) == OrderEdit()


def test_address_and_note_change_only_while_confirmed():
    change = OrderChange(shipping_address="2 High St", note="ring twice")
    assert decide_update(placed("confirmed"), change) == OrderEdit(
        shipping_address="2 High St", note="ring twice")
    with pytest.raises(FailedPrecondition) as caught:
        decide_update(placed("shipped"), change)
    assert caught.value.reason == "ORDER_NOT_EDITABLE"
    # The unchanged address sent back with a status change is not an edit.
    assert decide_update(placed("shipped"), OrderChange(
        shipping_address="1 Main St", status="delivered")) == OrderEdit(status="delivered")


def test_ship_and_edit_in_one_request():
    edit = decide_update(placed("confirmed"), OrderChange(status="shipped", note="fragile"))
    assert edit == OrderEdit(status="shipped", note="fragile")


def test_delete_cancels_a_confirmed_order_and_refuses_a_shipped_one():
    assert decide_delete(placed("confirmed")) == OrderEdit(status="cancelled", delete=True)
    assert decide_delete(placed("cancelled")) == OrderEdit(delete=True)
    for status in ("shipped", "delivered"):
        with pytest.raises(FailedPrecondition) as caught:
            decide_delete(placed(status))
        assert caught.value.reason == "ORDER_SHIPPED"
