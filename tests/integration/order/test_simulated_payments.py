"""The simulated processor against its PostgreSQL ledger, and the order schema's migration."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.order.payment_store import PaymentLedger
from services.order.payments import (
    PaymentDeclined,
    PaymentUnavailable,
    ProcessorDeps,
    payment_processor,
)

from .support import Stack


@pytest.fixture
def processor(stack: Stack):
    return payment_processor("simulated", ProcessorDeps(settings=stack.settings,
                                                        engine=stack.engine))


async def ledger_rows(stack: Stack, order_id: str) -> list[tuple]:
    async with stack.engine.connect() as connection:
        rows = await connection.execute(text(
            "SELECT id, amount, currency, status, refunded_at IS NOT NULL "
            "FROM simulated_payments WHERE order_id = :order_id"), {"order_id": order_id})
        return [tuple(row) for row in rows]


async def test_a_charge_is_made_once_per_order(stack: Stack, processor):
    order_id = uuid.uuid4().hex
    first = await processor.charge(order_id=order_id, amount=Decimal("12.30"), currency="EUR",
                                   token="tok_visa")
    second = await processor.charge(order_id=order_id, amount=Decimal("12.30"),
                                    currency="EUR", token="tok_visa")
    assert first == second and await processor.find_charge(order_id=order_id) == first
    assert await ledger_rows(stack, order_id) == [(first, Decimal("12.30"), "EUR", "captured",
                                                   False)]


async def test_a_refund_happens_once(stack: Stack, processor):
    order_id = uuid.uuid4().hex
    reference = await processor.charge(order_id=order_id, amount=Decimal("1.00"),
                                       currency="USD", token="tok_visa")
    await processor.refund(reference=reference)
    (row,) = await ledger_rows(stack, order_id)
    await processor.refund(reference=reference)
    assert await ledger_rows(stack, order_id) == [row]
    assert row[3:] == ("refunded", True)


@pytest.mark.parametrize("token, error", [
    ("tok_decline", PaymentDeclined), ("tok_error", PaymentUnavailable),
    ("tok_unknown", PaymentDeclined), ("", PaymentDeclined)])
async def test_tokens_that_do_not_approve_charge_nothing(stack: Stack, processor, token, error):
    order_id = uuid.uuid4().hex
    with pytest.raises(error):
        await processor.charge(order_id=order_id, amount=Decimal("1.00"), currency="USD",
                               token=token)
    assert await ledger_rows(stack, order_id) == []
    assert await processor.find_charge(order_id=order_id) is None


async def test_refunding_an_unknown_reference_changes_nothing(stack: Stack, processor):
    order_id = uuid.uuid4().hex
    await processor.charge(order_id=order_id, amount=Decimal("1.00"), currency="USD",
                           token="tok_visa")
    before = await ledger_rows(stack, order_id)
    await PaymentLedger(stack.engine).refund("ch_unknown")
    assert await ledger_rows(stack, order_id) == before and before[0][3] == "captured"


async def test_the_migration_builds_the_indexes_the_queries_use(stack: Stack):
    async with stack.engine.connect() as connection:
        indexes = dict((await connection.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orders'"))).all())
        version = (await connection.execute(text(
            "SELECT version_num FROM alembic_version_order"))).scalar_one()
    assert version == "order_0001"
    assert "UNIQUE" in indexes["orders_idempotency_key"]
    assert "WHERE (idempotency_key IS NOT NULL)" in indexes["orders_idempotency_key"]
    assert "(customer, created_at DESC, id DESC)" in indexes["orders_customer_created"]
    assert "(created_at DESC, id DESC)" in indexes["orders_created"]
    assert "(status, created_at)" in indexes["orders_status_created"]
