"""Racing CreateOrder calls: never oversell, never charge twice, one order per idempotency key."""

from __future__ import annotations

import asyncio
import collections

import grpc
import pytest

from .support import Stack, create_request, failure


async def outcomes(stack: Stack, requests) -> tuple[list, list]:
    """(placed orders, decoded failures) of calls made all at once."""
    results = await asyncio.gather(
        *(stack.as_customer(r.customer).CreateOrder(r) for r in requests),
        return_exceptions=True)
    placed = [r.order for r in results if not isinstance(r, BaseException)]
    refused = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(placed) + len(refused) == len(requests), [
        r for r in results if isinstance(r, BaseException)
        and not isinstance(r, grpc.aio.AioRpcError)]
    return placed, refused


async def test_a_hundred_buyers_of_ten_units(stack: Stack):
    customers = await asyncio.gather(*(stack.customer() for _ in range(3)))
    product = await stack.product(price="2.50", stock=10)
    placed, refused = await outcomes(stack, [
        create_request(customers[n % 3], [(product, 1)], key=f"buy-{n}") for n in range(100)])
    assert len(placed) == 10 and all(order.status == "confirmed" for order in placed)
    assert len({order.id for order in placed}) == 10
    assert len(refused) == 90
    assert {(f.code, f.reason) for f in refused} == {
        (grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_STOCK")}
    assert {f.metadata["product_id"] for f in refused} == {product}
    assert await stack.stock(product) == 0
    charges = collections.Counter()
    for customer in customers:
        charges.update(await stack.charges(customer))
    assert charges == {"captured": 10}


async def test_twenty_calls_with_one_key_make_one_order(stack: Stack):
    customer, product = await stack.customer(), await stack.product(price="3.00", stock=50)
    request = create_request(customer, [(product, 4)], key="checkout-1")
    placed, refused = await outcomes(stack, [request] * 20)
    assert refused == []
    assert len({order.id for order in placed}) == 1 and placed[0].total == "12.00"
    assert await stack.stock(product) == 46
    assert await stack.charges(customer) == {"captured": 1}
    assert len(await stack.order_rows(customer)) == 1
    # Later, the same request with the same key still answers with the first order.
    again = await stack.as_customer(request.customer).CreateOrder(request)
    assert again.order == placed[0]
    assert await stack.stock(product) == 46


async def test_the_same_key_with_another_request_is_rejected(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=50)
    first = await stack.place(customer, [(product, 1)], key="checkout-2")
    for other in (create_request(customer, [(product, 2)], key="checkout-2"),
                  create_request(customer, [(product, 1)], key="checkout-2", note="hi"),
                  create_request(customer, [(product, 1)], key="checkout-2",
                                 token="tok_decline")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.as_customer(other.customer).CreateOrder(other)
        refused = failure(caught.value)
        assert (refused.code, refused.reason) == (
            grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    assert await stack.stock(product) == 49
    assert [row["id"] for row in await stack.order_rows(customer)] == [first.id]


async def test_racing_calls_with_one_key_and_different_requests(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=50)
    requests = [create_request(customer, [(product, 1 + n % 2)], key="checkout-3")
                for n in range(10)]
    placed, refused = await outcomes(stack, requests)
    # Whichever request won, only requests equal to it get the order.
    assert len({order.id for order in placed}) == 1 and len(placed) == 5
    assert {(f.code, f.reason) for f in refused} == {
        (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")}
    assert await stack.stock(product) == 50 - placed[0].items[0].quantity
    assert await stack.charges(customer) == {"captured": 1}


async def test_keys_belong_to_one_customer(stack: Stack):
    first, second = await asyncio.gather(stack.customer(), stack.customer())
    product = await stack.product(stock=50)
    one = await stack.place(first, [(product, 1)], key="shared-key")
    other = await stack.place(second, [(product, 1)], key="shared-key")
    assert one.id != other.id and await stack.stock(product) == 48


async def test_a_definite_failure_is_replayed_to_retries(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    request = create_request(customer, [(product, 1)], key="declined-1", token="tok_decline")
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.as_customer(request.customer).CreateOrder(request)
        assert failure(caught.value).reason == "PAYMENT_DECLINED"
    assert len(await stack.order_rows(customer)) == 1
    assert await stack.stock(product) == 5


async def test_a_transient_failure_frees_the_key_for_a_fresh_attempt(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    request = create_request(customer, [(product, 1)], key="flaky-1", token="tok_error")
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.as_customer(request.customer).CreateOrder(request)
        assert failure(caught.value).reason == "PAYMENT_PROCESSOR_UNAVAILABLE"
    rows = await stack.order_rows(customer)
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert all(row["idempotency_key"] is None for row in rows)
    assert await stack.stock(product) == 5


async def test_concurrent_calls_with_one_key_share_a_failure(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=2)
    request = create_request(customer, [(product, 3)], key="too-many")
    placed, refused = await outcomes(stack, [request] * 10)
    assert placed == [] and {f.reason for f in refused} == {"OUT_OF_STOCK"}
    assert len(await stack.order_rows(customer)) == 1
    assert await stack.stock(product) == 2
