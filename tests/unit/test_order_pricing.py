"""Totals computed from reserved prices in exact decimals; failures recorded and replayed."""

from decimal import Decimal

import grpc
import pytest

from services.common.errors import FailedPrecondition, NotFound, ServiceError, Unavailable
from services.order.models import Failure, ReservedLine, money
from services.order.payments import ProcessorDeps, payment_processor
from services.order.placement import priced_lines


def line(product_id: str, quantity: int, price: str) -> ReservedLine:
    return ReservedLine(product_id=product_id, name=f"name {product_id}", quantity=quantity,
                        unit_price=Decimal(price))


def test_three_times_ten_cents_is_thirty_cents():
    lines, total = priced_lines([line("P1", 3, "0.10")], [("P1", 3)])
    assert money(total) == "0.30"
    assert money(lines[0].line_total) == "0.30" and money(lines[0].unit_price) == "0.10"


def test_mixed_quantities_sum_exactly():
    lines, total = priced_lines(
        [line("B", 7, "19.99"), line("A", 1, "0.01"), line("C", 1000, "0.07")],
        [("A", 1), ("B", 7), ("C", 1000)])
    assert [item.product_id for item in lines] == ["A", "B", "C"]
    assert [money(item.line_total) for item in lines] == ["0.01", "139.93", "70.00"]
    assert money(total) == "209.94"


def test_free_products_total_zero_with_two_places():
    _, total = priced_lines([line("P1", 2, "0")], [("P1", 2)])
    assert money(total) == "0.00"


def test_a_total_beyond_the_column_is_refused():
    with pytest.raises(FailedPrecondition) as caught:
        priced_lines([line("P1", 1_000_000, "99999.99")], [("P1", 1_000_000)])
    assert caught.value.reason == "TOTAL_TOO_LARGE"


def test_lines_other_than_requested_are_an_error():
    with pytest.raises(ServiceError):
        priced_lines([line("P1", 1, "1.00")], [("P1", 2)])


def test_failures_round_trip_to_the_same_error():
    original = FailedPrecondition("not enough stock", reason="OUT_OF_STOCK",
                                  metadata={"product_id": "P1"})
    replayed = Failure.from_json(Failure.of(original).to_json()).error()
    assert type(replayed) is FailedPrecondition
    assert (replayed.message, replayed.reason, replayed.metadata) == (
        "not enough stock", "OUT_OF_STOCK", {"product_id": "P1"})
    missing = Failure.of(NotFound("no P9", resource=("product", "P9")))
    assert Failure.from_json(missing.to_json()).error().resource == ("product", "P9")
    assert not Failure.of(original).transient


def test_transient_failures_free_the_key():
    assert Failure.of(Unavailable("down")).transient
    assert Failure.of(ServiceError("internal error")).transient
    assert Failure.of(ServiceError("x")).code == grpc.StatusCode.INTERNAL.name


def test_an_unknown_payment_processor_is_a_clear_setting_error():
    with pytest.raises(ValueError, match="unknown payment processor 'stripe'.*simulated"):
        payment_processor("stripe", ProcessorDeps(settings=None, engine=None))
