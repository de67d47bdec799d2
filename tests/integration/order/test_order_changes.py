"""UpdateOrder, DeleteOrder, GetOrder and ListOrders over real gRPC, racing where it matters."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from portico.order.v1 import order_pb2
from portico.product.v1 import product_pb2

from .support import Failure, Stack, failure


async def refused(call) -> Failure:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return failure(caught.value)


def update(order_id: str, **fields) -> order_pb2.UpdateOrderRequest:
    return order_pb2.UpdateOrderRequest(id=order_id, **fields)


async def placed(stack: Stack, *, stock: int = 10, quantity: int = 2):
    customer, product = await stack.customer(), await stack.product(price="5.00", stock=stock)
    order = await stack.place(customer, [(product, quantity)], shipping_address="1 Main St")
    return customer, product, order


async def test_ship_then_deliver_commits_the_stock(stack: Stack):
    customer, product, order = await placed(stack)
    shipped = (await stack.orders.UpdateOrder(update(order.id, status="shipped"))).order
    assert shipped.status == "shipped" and shipped.total == "10.00"
    assert shipped.update_time.ToDatetime() >= order.update_time.ToDatetime()
    # The reservation is final: the Product service will no longer give it back.
    gone = await refused(stack.products.ReleaseStock(
        product_pb2.ReleaseStockRequest(reservation_id=order.id)))
    assert gone.reason == "RESERVATION_COMMITTED"
    delivered = (await stack.orders.UpdateOrder(update(order.id, status="delivered"))).order
    assert delivered.status == "delivered" and await stack.stock(product) == 8
    rows = await stack.order_rows(customer)
    assert rows[0]["settled_at"] is not None


async def test_invalid_transitions_are_failed_precondition(stack: Stack):
    _, _, order = await placed(stack)
    skipped = await refused(stack.orders.UpdateOrder(update(order.id, status="delivered")))
    assert (skipped.code, skipped.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION, "INVALID_TRANSITION")
    await stack.orders.UpdateOrder(update(order.id, status="shipped"))
    late = await refused(stack.orders.UpdateOrder(update(order.id, status="cancelled")))
    assert late.reason == "INVALID_TRANSITION"
    unknown = await refused(stack.orders.UpdateOrder(update(order.id, status="lost")))
    assert unknown.code == grpc.StatusCode.INVALID_ARGUMENT and "status" in unknown.fields


async def test_repeating_a_transition_is_harmless(stack: Stack):
    _, product, order = await placed(stack)
    for _ in range(2):
        again = (await stack.orders.UpdateOrder(update(order.id, status="cancelled"))).order
        assert again.status == "cancelled"
    assert await stack.stock(product) == 10


async def test_address_and_note_change_until_the_order_ships(stack: Stack):
    _, _, order = await placed(stack)
    changed = (await stack.orders.UpdateOrder(update(
        order.id, shipping_address="2 High St", note="ring twice"))).order
    assert (changed.shipping_address, changed.note, changed.status) == (
        "2 High St", "ring twice", "confirmed")
    await stack.orders.UpdateOrder(update(order.id, status="shipped"))
    late = await refused(stack.orders.UpdateOrder(update(order.id, shipping_address="3 Elm St")))
    assert (late.code, late.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_NOT_EDITABLE")
    fetched = (await stack.orders.GetOrder(order_pb2.GetOrderRequest(id=order.id))).order
    assert fetched.shipping_address == "2 High St"


async def test_an_update_must_change_something_valid(stack: Stack):
    _, _, order = await placed(stack)
    empty = await refused(stack.orders.UpdateOrder(update(order.id)))
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT
    long = await refused(stack.orders.UpdateOrder(update(order.id, note="n" * 1001)))
    assert long.code == grpc.StatusCode.INVALID_ARGUMENT and "note" in long.fields


async def test_delete_cancels_refunds_and_hides_the_order(stack: Stack):
    customer, product, order = await placed(stack)
    assert await stack.stock(product) == 8
    await stack.orders.DeleteOrder(order_pb2.DeleteOrderRequest(id=order.id))
    assert await stack.stock(product) == 10
    assert await stack.charges(customer) == {"refunded": 1}
    for call in (stack.orders.GetOrder(order_pb2.GetOrderRequest(id=order.id)),
                 stack.orders.UpdateOrder(update(order.id, note="x")),
                 stack.orders.DeleteOrder(order_pb2.DeleteOrderRequest(id=order.id))):
        missing = await refused(call)
        assert missing.code == grpc.StatusCode.NOT_FOUND
        assert missing.resource == ("order", order.id)
    (row,) = await stack.order_rows(customer)  # kept for audit
    assert row["status"] == "cancelled" and row["deleted_at"] is not None


async def test_two_racing_deletes_release_and_refund_once(stack: Stack):
    customer, product, order = await placed(stack, stock=6, quantity=3)
    request = order_pb2.DeleteOrderRequest(id=order.id)
    results = await asyncio.gather(stack.orders.DeleteOrder(request),
                                   stack.orders.DeleteOrder(request), return_exceptions=True)
    errors = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) == 1 and errors[0].code == grpc.StatusCode.NOT_FOUND
    assert await stack.stock(product) == 6
    assert await stack.charges(customer) == {"refunded": 1}


async def test_a_cancel_racing_a_delete_releases_and_refunds_once(stack: Stack):
    customer, product, order = await placed(stack, stock=6, quantity=3)
    results = await asyncio.gather(
        stack.orders.UpdateOrder(update(order.id, status="cancelled")),
        stack.orders.DeleteOrder(order_pb2.DeleteOrderRequest(id=order.id)),
        return_exceptions=True)
    for result in results:  # a cancel that lost to the delete finds no order
        if isinstance(result, grpc.aio.AioRpcError):
            assert result.code() == grpc.StatusCode.NOT_FOUND
    assert not isinstance(results[1], BaseException)
    assert await stack.stock(product) == 6
    assert await stack.charges(customer) == {"refunded": 1}
    (row,) = await stack.order_rows(customer)
    assert row["status"] == "cancelled" and row["deleted_at"] is not None


async def test_a_ship_racing_a_cancel_has_one_winner(stack: Stack):
    customer, product, order = await placed(stack, stock=6, quantity=3)
    shipped, cancelled = await asyncio.gather(
        stack.orders.UpdateOrder(update(order.id, status="shipped")),
        stack.orders.UpdateOrder(update(order.id, status="cancelled")),
        return_exceptions=True)
    winners = [r for r in (shipped, cancelled) if not isinstance(r, BaseException)]
    losers = [failure(r) for r in (shipped, cancelled) if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and [f.reason for f in losers] == ["INVALID_TRANSITION"]
    if winners[0].order.status == "shipped":
        assert await stack.stock(product) == 3 and await stack.charges(customer) == {
            "captured": 1}
    else:
        assert await stack.stock(product) == 6 and await stack.charges(customer) == {
            "refunded": 1}


async def test_a_shipped_order_cannot_be_deleted(stack: Stack):
    customer, product, order = await placed(stack)
    await stack.orders.UpdateOrder(update(order.id, status="shipped"))
    shipped = await refused(stack.orders.DeleteOrder(order_pb2.DeleteOrderRequest(id=order.id)))
    assert (shipped.code, shipped.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ORDER_SHIPPED")
    assert await stack.stock(product) == 8
    assert await stack.charges(customer) == {"captured": 1}


async def test_the_customer_filter_hides_other_customers_orders(stack: Stack):
    owner, product, order = await placed(stack)
    stranger = "someone-else"
    for call in (
        stack.orders.GetOrder(order_pb2.GetOrderRequest(id=order.id, customer=stranger)),
        stack.orders.UpdateOrder(update(order.id, customer=stranger, status="cancelled")),
        stack.orders.DeleteOrder(order_pb2.DeleteOrderRequest(id=order.id, customer=stranger)),
    ):
        assert (await refused(call)).code == grpc.StatusCode.NOT_FOUND
    mine = await stack.orders.GetOrder(order_pb2.GetOrderRequest(id=order.id, customer=owner))
    assert mine.order.status == "confirmed" and await stack.stock(product) == 8
    listed = await stack.orders.ListOrders(order_pb2.ListOrdersRequest(customer=stranger))
    assert list(listed.orders) == []


async def test_list_pages_newest_first_and_shows_only_placed_orders(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=20)
    ids = [(await stack.place(customer, [(product, 1)])).id for _ in range(5)]
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.place(customer, [(product, 1)], token="tok_decline")
    await stack.orders.DeleteOrder(order_pb2.DeleteOrderRequest(id=ids[1]))
    seen, token = [], ""
    while True:
        page = await stack.orders.ListOrders(order_pb2.ListOrdersRequest(
            customer=customer, page_size=2, page_token=token))
        assert len(page.orders) <= 2
        seen += [order.id for order in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert seen == [ids[4], ids[3], ids[2], ids[0]]
    everyone = await stack.orders.ListOrders(order_pb2.ListOrdersRequest(page_size=100))
    assert set(seen) <= {order.id for order in everyone.orders}


async def test_bad_list_and_get_requests_are_invalid_argument(stack: Stack):
    bad_token = await refused(stack.orders.ListOrders(
        order_pb2.ListOrdersRequest(page_token="not-a-token")))
    assert bad_token.code == grpc.StatusCode.INVALID_ARGUMENT and "page_token" in bad_token.fields
    bad_size = await refused(stack.orders.ListOrders(order_pb2.ListOrdersRequest(page_size=101)))
    assert "page_size" in bad_size.fields
    no_id = await refused(stack.orders.GetOrder(order_pb2.GetOrderRequest(id="")))
    assert no_id.code == grpc.StatusCode.INVALID_ARGUMENT and "id" in no_id.fields
    unknown = await refused(stack.orders.GetOrder(order_pb2.GetOrderRequest(id="nope")))
    assert unknown.code == grpc.StatusCode.NOT_FOUND
