"""The crash point between reservation and commit, made real: an instance runs CreateOrder's
steps up to the reservation (or the charge) and is then dropped; the reconciler gives the order
up and the stock and money come back. Also: settling what an instance could not finish."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

import grpc
import pytest

from portico.order.v1 import order_pb2
from services.order import server
from services.order.server import OrderComponents
from services.order.validation import new_order

from .support import Stack, failure

TOTAL = Decimal("2.00")


def components(stack: Stack, **settings) -> OrderComponents:
    """Another order service instance's parts, on the same database and neighbours."""
    return server.build(stack.settings.model_copy(update=settings))


async def crashed_after_reserving(stack: Stack, customer: str, product: str, *,
                                  charge: bool = False, key: str = "") -> str:
    """Runs a placement up to the reservation (and the charge), then drops the instance."""
    crashed = components(stack)
    new = new_order(customer=customer, items=[(product, 2)], token="tok_visa",
                    idempotency_key=key)
    claim = await crashed.placement.claim(new)
    await crashed.placement.reserve(claim.order_id, new)
    if charge:
        await crashed.placement.charge(claim.order_id, total=TOTAL, token="tok_visa")
    await crashed.close()
    return claim.order_id


async def test_a_young_pending_order_is_left_alone_then_given_up(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    order_id = await crashed_after_reserving(stack, customer, product)
    assert await stack.stock(product) == 3

    patient = components(stack, order_pending_timeout_seconds=3600)
    sweep = await patient.reconciler.run_once()
    await patient.close()
    assert order_id not in sweep.abandoned
    assert [row["status"] for row in await stack.order_rows(customer)] == ["pending"]
    assert await stack.stock(product) == 3

    await asyncio.sleep(0.1)  # let the order grow older than the short timeout below
    eager = components(stack, order_pending_timeout_seconds=0.05)
    sweep = await eager.reconciler.run_once()
    await eager.close()
    assert order_id in sweep.abandoned
    assert await stack.stock(product) == 5
    (row,) = await stack.order_rows(customer)
    assert row["status"] == "failed" and row["settled_at"] is not None
    assert row["failure"]["reason"] == "ORDER_ABANDONED"
    missing = await refused_get(stack, order_id)
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def refused_get(stack: Stack, order_id: str):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.orders.GetOrder(order_pb2.GetOrderRequest(id=order_id))
    return failure(caught.value)


async def test_a_charge_made_before_the_crash_is_refunded(stack: Stack):
    customer, product = await stack.customer(), await stack.product(price="1.00", stock=5)
    await crashed_after_reserving(stack, customer, product, charge=True)
    assert await stack.charges(customer) == {"captured": 1}
    await asyncio.sleep(0.1)
    eager = components(stack, order_pending_timeout_seconds=0.05)
    await eager.reconciler.run_once()
    assert await stack.stock(product) == 5
    assert await stack.charges(customer) == {"refunded": 1}
    # A second pass (or another instance's) changes nothing more.
    again = await eager.reconciler.run_once()
    await eager.close()
    assert again.abandoned == ()
    assert await stack.stock(product) == 5 and await stack.charges(customer) == {"refunded": 1}


async def test_a_late_placement_cannot_confirm_a_given_up_order(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    late = components(stack)
    new = new_order(customer=customer, items=[(product, 1)], token="tok_visa")
    claim = await late.placement.claim(new)
    await late.placement.reserve(claim.order_id, new)
    await asyncio.sleep(0.1)
    eager = components(stack, order_pending_timeout_seconds=0.05)
    await eager.reconciler.run_once()
    await eager.close()
    confirmed = await late.store.confirm(claim.order_id, lines=[], total=TOTAL,
                                         payment_reference="ch_late")
    await late.close()
    assert confirmed is False
    assert await stack.stock(product) == 5
    assert [row["status"] for row in await stack.order_rows(customer)] == ["failed"]


async def test_the_key_of_an_abandoned_order_can_be_used_again(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    await crashed_after_reserving(stack, customer, product, key="retry-after-crash")
    await asyncio.sleep(0.1)
    eager = components(stack, order_pending_timeout_seconds=0.05)
    await eager.reconciler.run_once()
    await eager.close()
    order = await stack.place(customer, [(product, 2)], key="retry-after-crash")
    assert order.status == "confirmed" and await stack.stock(product) == 3


def dead_address() -> str:
    """An address where nothing listens (a port just released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_a_cancel_the_product_service_missed_is_settled_later(stack: Stack):
    customer, product = await stack.customer(), await stack.product(stock=5)
    order = await stack.place(customer, [(product, 2)])
    cut_off = components(stack, product_addrs=[dead_address()], upstream_timeout_seconds=1.0)
    await cut_off.lifecycle.delete(order.id, customer="")
    await cut_off.close()
    # The cancel is recorded and the money is back; the stock waits for the reconciler.
    (row,) = await stack.order_rows(customer)
    assert row["status"] == "cancelled" and row["settled_at"] is None
    assert await stack.charges(customer) == {"refunded": 1}
    assert await stack.stock(product) == 3
    healthy = components(stack)
    sweep = await healthy.reconciler.run_once()
    await healthy.close()
    assert sweep.settled >= 1
    assert await stack.stock(product) == 5
    assert await stack.charges(customer) == {"refunded": 1}
    assert (await stack.order_rows(customer))[0]["settled_at"] is not None
