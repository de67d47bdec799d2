"""CreateOrder/UpdateOrder/ListOrders input rules: every bad field reported as a violation."""

from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument
from services.order.validation import (
    OrderChange,
    decode_page_token,
    encode_page_token,
    new_order,
    order_change,
    order_ref,
    page_request,
    request_hash,
)


def fields(error: InvalidArgument) -> set[str]:
    return {field for field, _ in error.violations}


def order(**overrides):
    values = dict(customer="u1", items=[("P1", 1)], token="tok_visa")
    return new_order(**(values | overrides))


def test_duplicate_lines_are_merged_and_sorted():
    placed = order(items=[("P2", 1), ("P1", 2), ("P2", 3)])
    assert placed.items == (("P1", 2), ("P2", 4))


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(InvalidArgument) as caught:
        new_order(customer="", items=[("bad id!", 0)], token="", shipping_address="a" * 501,
                  note="n" * 1001, idempotency_key="k" * 201)
    assert fields(caught.value) == {
        "customer", "items[0].product_id", "items[0].quantity", "payment.token",
        "shipping_address", "note", "idempotency_key"}


@pytest.mark.parametrize("items, field", [
    ([], "items"),
    ([("P1", 1)] * 101, "items"),
    ([("P1", 1_000_001)], "items[0].quantity"),
    ([("P1", -1)], "items[0].quantity"),
    ([("P1", 600_000), ("P1", 600_000)], "items"),
    ([("x" * 65, 1)], "items[0].product_id"),
    ([("", 1)], "items[0].product_id"),
])
def test_bad_items(items, field):
    with pytest.raises(InvalidArgument) as caught:
        order(items=items)
    assert field in fields(caught.value)


def test_limits_are_inclusive():
    placed = order(items=[("P1", 1_000_000)] + [(f"P{i}", 1) for i in range(2, 101)],
                   shipping_address="a" * 500, note="n" * 1000, idempotency_key="k" * 200)
    assert len(placed.items) == 100


def test_nul_characters_are_refused_before_they_reach_postgresql():
    with pytest.raises(InvalidArgument) as caught:
        order(note="a\x00b", customer="u\x00")
    assert fields(caught.value) == {"note", "customer"}


def test_request_hash_ignores_line_order_and_merging_but_not_content():
    one = order(items=[("P1", 1), ("P2", 2)], idempotency_key="k1")
    same = order(items=[("P2", 1), ("P1", 1), ("P2", 1)], idempotency_key="k2")
    assert request_hash(one) == request_hash(same)
    assert request_hash(one) != request_hash(order(items=[("P1", 1), ("P2", 3)]))
    assert request_hash(one) != request_hash(order(items=[("P1", 1), ("P2", 2)], note="x"))
    assert request_hash(one) != request_hash(
        order(items=[("P1", 1), ("P2", 2)], token="tok_decline"))


def test_order_ref_and_change():
    with pytest.raises(InvalidArgument) as caught:
        order_ref("", "c\x00")
    assert fields(caught.value) == {"id", "customer"}
    with pytest.raises(InvalidArgument) as caught:
        order_change("o1", "", OrderChange())
    assert fields(caught.value) == {"shipping_address"}
    with pytest.raises(InvalidArgument) as caught:
        order_change("o1", "", OrderChange(status="pending", note="n" * 1001))
    assert fields(caught.value) == {"status", "note"}
    order_change("o1", "", OrderChange(status="shipped"))


def test_page_tokens_round_trip_and_garbage_is_refused():
    moment = datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    token = encode_page_token(moment, "abc")
    assert decode_page_token(token) == (moment, "abc")
    page = page_request(page_size=0, page_token=token, customer="")
    assert page.size == 20 and page.after == (moment, "abc")
    for bad in ("!!!", "bm90IGpzb24", encode_page_token(moment, "x")[:-3], "WzEsMl0"):
        with pytest.raises(InvalidArgument) as caught:
            page_request(page_size=10, page_token=bad, customer="")
        assert fields(caught.value) == {"page_token"}


@pytest.mark.parametrize("size", [-1, 101])
def test_page_size_out_of_range(size):
    with pytest.raises(InvalidArgument) as caught:
        page_request(page_size=size, page_token="", customer="")
    assert fields(caught.value) == {"page_size"}
