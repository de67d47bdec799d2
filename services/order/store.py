"""PostgreSQL storage of orders and their items: the only order module that speaks SQL.

Every status change is a conditional UPDATE (WHERE status = the expected one) or runs under
SELECT ... FOR UPDATE, so whichever of several racing writers changes an order, exactly one wins
and only the winner performs the change's side effects.

That also makes every method safe to repeat, so each is retried while PostgreSQL fails over
(`@retried`). A repetition after a commit whose answer was lost finds its own work done: a
claim finds the order under its own id, a confirmation finds the order confirmed with its own
payment reference; a conditional UPDATE changes nothing the second time (its caller reads the
state it needs); a transition decides again on the row as it now is (a cancel already applied
is a cancel of a cancelled order: no change, and its refund is left to the reconciler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.db import postgres_retry
from services.common.errors import NotFound
from services.common.storeretry import StoreRetry, retried
from services.order.models import (
    CONFIRMED,
    FAILED,
    PENDING,
    SETTLED_STATUSES,
    VISIBLE_STATUSES,
    Failure,
    NewOrder,
    Order,
    OrderLine,
)

metadata = sa.MetaData()

orders = sa.Table(
    "orders", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("customer", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("total", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("shipping_address", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("payment_reference", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("failure", JSONB),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
    sa.Column("settled_at", sa.DateTime(timezone=True)),
)

order_items = sa.Table(
    "order_items", metadata,
    sa.Column("order_id", sa.Text, sa.ForeignKey("orders.id"), primary_key=True),
    sa.Column("product_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
    sa.Column("line_total", sa.Numeric(12, 2), nullable=False),
)

_visible = sa.and_(orders.c.deleted_at.is_(None), orders.c.status.in_(VISIBLE_STATUSES))
_ABANDONED = Failure(code="ABORTED", reason="ORDER_ABANDONED",
                     message="the order was not completed in time and was given up")


@dataclass(frozen=True)
class Claim:
    """The order a CreateOrder call placed (`created`) or found under its idempotency key."""

    order_id: str
    request_hash: str
    created: bool


@dataclass(frozen=True)
class OrderEdit:
    """Column changes decided for an order under its row lock; None keeps a value."""

    status: str | None = None
    shipping_address: str | None = None
    note: str | None = None
    delete: bool = False


@dataclass(frozen=True)
class OrderState:
    """What an idempotent retry needs to know about the order it found."""

    status: str
    deleted: bool
    failure: Failure | None


class OrderStore:
    """Orders and order items in PostgreSQL."""

    def __init__(self, engine: AsyncEngine, *, retry: StoreRetry | None = None) -> None:
        self._engine = engine
        self._retry = retry or postgres_retry()

    @retried
    async def claim(self, new: NewOrder, *, order_id: str, request_hash: str,
                    currency: str) -> Claim | None:
        """Inserts the pending order, unless its (customer, idempotency key) is taken: then the
        order holding the key, or None when the key was freed meanwhile (try again). The order
        id is the claim's own: a repeated claim finds its order and says it created it."""
        values = dict(
            id=order_id, customer=new.customer, status=PENDING, total=Decimal(0),
            currency=currency, shipping_address=new.shipping_address, note=new.note,
            payment_reference="", idempotency_key=new.idempotency_key or None,
            request_hash=request_hash, created_at=sa.func.now(), updated_at=sa.func.now(),
        )
        # No conflict target: the key's unique index, or the id when this claim is repeated.
        statement = insert(orders).values(**values).on_conflict_do_nothing() \
            .returning(orders.c.id)
        holder = orders.c.id == order_id if not new.idempotency_key else sa.and_(
            orders.c.customer == new.customer, orders.c.idempotency_key == new.idempotency_key)
        async with self._engine.begin() as connection:
            if (await connection.execute(statement)).first() is not None:
                return Claim(order_id, request_hash, created=True)
            row = (await connection.execute(
                sa.select(orders.c.id, orders.c.request_hash).where(holder))).first()
        if row is None:
            return None
        return Claim(row.id, row.request_hash, created=row.id == order_id)

    @retried
    async def state(self, order_id: str) -> OrderState:
        async with self._engine.connect() as connection:
            row = (await connection.execute(
                sa.select(orders.c.status, orders.c.deleted_at, orders.c.failure)
                .where(orders.c.id == order_id)
            )).one()
        failure = Failure.from_json(row.failure) if row.failure else None
        return OrderState(row.status, row.deleted_at is not None, failure)

    @retried
    async def confirm(self, order_id: str, *, lines: Sequence[OrderLine], total: Decimal,
                      payment_reference: str) -> bool:
        """Writes the items and confirms the order in one transaction; False (and nothing
        written) when the order is no longer pending, unless this very confirmation made it
        so (a repetition after a lost answer: only a confirmation sets the payment reference)."""
        async with self._engine.begin() as connection:
            confirmed = await connection.execute(
                orders.update()
                .where(orders.c.id == order_id, orders.c.status == PENDING)
                .values(status=CONFIRMED, total=total, payment_reference=payment_reference,
                        updated_at=sa.func.now())
            )
            if confirmed.rowcount == 0:
                reference = (await connection.execute(
                    sa.select(orders.c.payment_reference).where(orders.c.id == order_id)
                )).scalar_one_or_none()
                return bool(payment_reference) and reference == payment_reference
            await connection.execute(order_items.insert(), [
                {"order_id": order_id, "product_id": line.product_id, "name": line.name,
                 "quantity": line.quantity, "unit_price": line.unit_price,
                 "line_total": line.line_total}
                for line in lines
            ])
        return True

    @retried
    async def fail(self, order_id: str, failure: Failure) -> bool:
        """Marks a pending order failed with its reason; a transient failure frees the key."""
        key = orders.c.idempotency_key if not failure.transient else None
        async with self._engine.begin() as connection:
            result = await connection.execute(
                orders.update().where(orders.c.id == order_id, orders.c.status == PENDING)
                .values(status=FAILED, failure=failure.to_json(), idempotency_key=key,
                        updated_at=sa.func.now())
            )
        return result.rowcount == 1

    @retried
    async def abandon_stale(self, older_than_seconds: float) -> list[str]:
        """Fails the orders pending for longer than the given time; returns their ids. The
        conditional UPDATE is the lock: of several reconcilers, one takes each order."""
        cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds)
        async with self._engine.begin() as connection:
            result = await connection.execute(
                orders.update()
                .where(orders.c.status == PENDING, orders.c.created_at < cutoff)
                .values(status=FAILED, failure=_ABANDONED.to_json(), idempotency_key=None,
                        updated_at=sa.func.now())
                .returning(orders.c.id)
            )
            return list(result.scalars())

    @retried
    async def unsettled(self, *, limit: int = 100) -> list[tuple[str, str]]:
        """(id, status) of orders whose release, refund or stock commit is not done yet."""
        async with self._engine.connect() as connection:
            result = await connection.execute(
                sa.select(orders.c.id, orders.c.status)
                .where(orders.c.settled_at.is_(None), orders.c.status.in_(SETTLED_STATUSES))
                .order_by(orders.c.updated_at).limit(limit)
            )
            return [(row.id, row.status) for row in result]

    @retried
    async def mark_settled(self, order_id: str, statuses: Sequence[str]) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                orders.update()
                .where(orders.c.id == order_id, orders.c.status.in_(statuses),
                       orders.c.settled_at.is_(None))
                .values(settled_at=sa.func.now())
            )

    @retried
    async def get(self, order_id: str, *, customer: str = "") -> Order | None:
        """A visible order (confirmed, shipped, delivered or cancelled, not deleted)."""
        query = sa.select(orders).where(orders.c.id == order_id, _visible)
        if customer:
            query = query.where(orders.c.customer == customer)
        async with self._engine.connect() as connection:
            found = await _with_items(connection, (await connection.execute(query)).all())
        return found[0] if found else None

    @retried
    async def page(self, *, size: int, after: tuple[datetime, str] | None,
                   customer: str) -> tuple[list[Order], bool]:
        """Visible orders newest first, after a position; and whether more follow."""
        query = sa.select(orders).where(_visible)
        if customer:
            query = query.where(orders.c.customer == customer)
        if after is not None:
            query = query.where(sa.tuple_(orders.c.created_at, orders.c.id) < sa.tuple_(*after))
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(size + 1)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
            found = await _with_items(connection, rows[:size])
        return found, len(rows) > size

    @retried
    async def transition(self, order_id: str, *, customer: str,
                         decide: Callable[[Order], OrderEdit]) -> tuple[Order, Order]:
        """Applies decide(order) to a visible order under its row lock, so that racing
        changes are judged one after the other. Returns the order before and after."""
        query = sa.select(orders).where(orders.c.id == order_id, _visible).with_for_update()
        if customer:
            query = query.where(orders.c.customer == customer)
        async with self._engine.begin() as connection:
            row = (await connection.execute(query)).first()
            if row is None:
                raise NotFound(f"order {order_id} not found", resource=("order", order_id))
            (before,) = await _with_items(connection, [row])
            edit = decide(before)
            changes = {name: getattr(edit, name) for name in
                       ("status", "shipping_address", "note") if getattr(edit, name) is not None}
            if edit.delete:
                changes["deleted_at"] = sa.func.now()
            if changes:
                row = (await connection.execute(
                    orders.update().where(orders.c.id == order_id)
                    .values(**changes, updated_at=sa.func.now()).returning(*orders.c)
                )).one()
        return before, _order(row, before.items)


async def _with_items(connection: AsyncConnection, rows: Sequence) -> list[Order]:
    if not rows:
        return []
    lines: dict[str, list[OrderLine]] = {row.id: [] for row in rows}
    result = await connection.execute(
        sa.select(order_items).where(order_items.c.order_id.in_(list(lines)))
        .order_by(order_items.c.order_id, order_items.c.product_id)
    )
    for item in result:
        lines[item.order_id].append(OrderLine(
            product_id=item.product_id, name=item.name, quantity=item.quantity,
            unit_price=item.unit_price, line_total=item.line_total))
    return [_order(row, tuple(lines[row.id])) for row in rows]


def _order(row, items: tuple[OrderLine, ...]) -> Order:
    return Order(
        id=row.id, customer=row.customer, status=row.status, total=row.total,
        currency=row.currency, shipping_address=row.shipping_address, note=row.note,
        payment_reference=row.payment_reference, created_at=row.created_at,
        updated_at=row.updated_at, deleted=row.deleted_at is not None, items=items,
    )
