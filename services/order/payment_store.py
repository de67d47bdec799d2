"""The simulated processor's ledger: one row per charge in `simulated_payments`.

The unique order_id is the charge's idempotency key: a second capture for an order returns the
first charge, so an order is never charged twice, and a refund flips a charge from captured to
refunded at most once.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import postgres_retry
from services.common.storeretry import StoreRetry, retried

metadata = sa.MetaData()

payments = sa.Table(
    "simulated_payments", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False, unique=True),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("refunded_at", sa.DateTime(timezone=True)),
)


class PaymentLedger:
    """Charges of the simulated processor, stored in the order service's database."""

    def __init__(self, engine: AsyncEngine, *, retry: StoreRetry | None = None) -> None:
        self._engine = engine
        # Every method is safe to repeat (the order id keys the charge, a refund is
        # conditional): each is retried while PostgreSQL fails over.
        self._retry = retry or postgres_retry()

    @retried
    async def capture(self, *, order_id: str, amount: Decimal, currency: str) -> str:
        """Records a captured charge for the order, or returns the one it already has."""
        statement = insert(payments).values(
            id="ch_" + uuid.uuid4().hex, order_id=order_id, amount=amount, currency=currency,
            status="captured", created_at=sa.func.now(),
        ).on_conflict_do_nothing(index_elements=["order_id"]).returning(payments.c.id)
        async with self._engine.begin() as connection:
            reference = (await connection.execute(statement)).scalar_one_or_none()
            if reference is None:
                reference = (await connection.execute(
                    sa.select(payments.c.id).where(payments.c.order_id == order_id)
                )).scalar_one()
        return reference

    @retried
    async def refund(self, reference: str) -> None:
        """Marks a captured charge refunded; a refunded or unknown one is left as it is."""
        async with self._engine.begin() as connection:
            await connection.execute(
                payments.update()
                .where(payments.c.id == reference, payments.c.status == "captured")
                .values(status="refunded", refunded_at=sa.func.now())
            )

    @retried
    async def find(self, order_id: str) -> str | None:
        async with self._engine.connect() as connection:
            return (await connection.execute(
                sa.select(payments.c.id).where(payments.c.order_id == order_id)
            )).scalar_one_or_none()
