"""CreateOrder over real gRPC: totals, refusals with their details, and what stays unchanged."""

from __future__ import annotations

import logging

import grpc
import pytest

from portico.order.v1 import order_pb2
from services.common.logs import request_id_var

from .support import Stack, create_request, failure


async def test_an_order_is_confirmed_with_exact_totals(stack: Stack):
    customer = await stack.customer()
    dime, widget = await stack.product(price="0.10"), await stack.product(price="19.99", stock=20)
    order = await stack.place(customer, [(dime, 3), (widget, 2), (widget, 5)],
                              shipping_address="1 Main St", note="leave at the door")
    assert order.status == "confirmed" and order.customer == customer
    assert order.total == "140.23"  # 3 x 0.10 + 7 x 19.99
    lines = {item.product_id: item for item in order.items}
    assert (lines[dime].quantity, lines[dime].unit_price, lines[dime].line_total) == (
        3, "0.10", "0.30")
    assert (lines[widget].quantity, lines[widget].line_total) == (7, "139.93")
    assert lines[dime].name == "Widget at 0.10"
    assert order.currency == "USD" and order.payment_reference.startswith("ch_")
    assert (order.shipping_address, order.note) == ("1 Main St", "leave at the door")
    assert await stack.stock(dime) == 7 and await stack.stock(widget) == 13
    assert await stack.charges(customer) == {"captured": 1}
    fetched = await stack.orders.GetOrder(order_pb2.GetOrderRequest(id=order.id))
    assert fetched.order == order


async def test_three_dimes_are_thirty_cents(stack: Stack):
    customer, dime = await stack.customer(), await stack.product(price="0.10")
    order = await stack.place(customer, [(dime, 3)])
    assert order.total == "0.30" and order.items[0].line_total == "0.30"


async def test_a_declined_payment_changes_no_stock_and_no_visible_order(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.place(customer, [(product, 2)], token="tok_decline")
    refused = failure(caught.value)
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_DECLINED")
    assert await stack.stock(product) == 5
    listed = await stack.orders.ListOrders(order_pb2.ListOrdersRequest(customer=customer))
    assert list(listed.orders) == []
    assert await stack.charges(customer) == {}
    (row,) = await stack.order_rows(customer)  # kept for audit, not shown
    assert row["status"] == "failed" and row["settled_at"] is not None


async def test_an_unknown_token_is_declined(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.place(customer, [(product, 1)], token="tok_mastercard")
    assert failure(caught.value).reason == "PAYMENT_DECLINED"
    assert await stack.stock(product) == 5


async def test_a_processor_error_is_unavailable_and_changes_nothing(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.place(customer, [(product, 2)], token="tok_error")
    refused = failure(caught.value)
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.UNAVAILABLE, "PAYMENT_PROCESSOR_UNAVAILABLE")
    assert await stack.stock(product) == 5
    listed = await stack.orders.ListOrders(order_pb2.ListOrdersRequest(customer=customer))
    assert list(listed.orders) == []
    assert await stack.charges(customer) == {}


async def test_short_stock_is_out_of_stock_naming_the_product(stack: Stack):
    customer = await stack.customer()
    plenty, scarce = await stack.product(stock=10), await stack.product(stock=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.place(customer, [(plenty, 3), (scarce, 2)])
    refused = failure(caught.value)
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_STOCK")
    assert refused.metadata["product_id"] == scarce
    # All or none: the line that could be reserved was not kept.
    assert await stack.stock(plenty) == 10 and await stack.stock(scarce) == 1
    assert await stack.charges(customer) == {}


async def test_an_unknown_product_is_not_found_and_nothing_is_reserved(stack: Stack):
    customer, known = await stack.customer(), await stack.product(stock=4)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.place(customer, [(known, 1), ("NO-SUCH-PRODUCT", 1)])
    refused = failure(caught.value)
    assert refused.code == grpc.StatusCode.NOT_FOUND
    assert refused.resource == ("product", "NO-SUCH-PRODUCT")
    assert "NO-SUCH-PRODUCT" in refused.message
    assert await stack.stock(known) == 4


async def test_an_unknown_customer_is_refused_before_anything_happens(stack: Stack):
    product = await stack.product(stock=4)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.place("no-such-user", [(product, 1)])
    refused = failure(caught.value)
    assert refused.code == grpc.StatusCode.NOT_FOUND
    assert refused.resource == ("user", "no-such-user") and "customer" in refused.fields
    assert await stack.stock(product) == 4
    assert await stack.order_rows("no-such-user") == []


async def test_bad_input_is_invalid_argument_with_every_field(stack: Stack):
    # An empty customer is no fault: a new order is the signed-in caller's.
    request = create_request("", [("bad id!", 0), ("P1", 2_000_000)], token="",
                             note="n" * 1001, shipping_address="a" * 501, key="k" * 201)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.as_customer(await stack.customer()).CreateOrder(request)
    refused = failure(caught.value)
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(refused.fields) == {
        "items[0].product_id", "items[0].quantity", "items[1].quantity",
        "payment.token", "note", "shipping_address", "idempotency_key"}


async def test_an_order_without_items_or_payment_is_invalid(stack: Stack):
    customer = await stack.customer()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.as_customer(customer).CreateOrder(
            order_pb2.CreateOrderRequest(customer=customer))
    refused = failure(caught.value)
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(refused.fields) == {"items", "payment.token"}


class RequestIds(logging.Handler):
    """Records (method, request id) of every call any in-process server logs."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Read while the call's context is current: the id is a contextvar, not a field.
        self.seen.append((getattr(record, "method", ""), request_id_var.get()))


async def test_the_request_id_reaches_the_user_and_product_services(stack: Stack):
    customer, product = await stack.customer(), await stack.product()
    handler, logger = RequestIds(), logging.getLogger("portico.rpc")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        await stack.as_customer(customer).CreateOrder(
            create_request(customer, [(product, 1)]), metadata=(("x-request-id", "trace-me-1"),))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    traced = {method.rsplit("/", 1)[-1] for method, rid in handler.seen if rid == "trace-me-1"}
    assert {"CreateOrder", "GetUser", "ReserveStock"} <= traced
