"""CreateOrder: check the customer, claim the idempotency key, reserve, price, charge, commit.

1. the customer must exist (User.GetUser);
2. a `pending` row is inserted with the idempotency key and a hash of the request, in its own
   transaction: the unique (customer, idempotency_key) index lets one of several racing calls
   through; the others wait for that order to settle and answer as it did (a different request
   under the same key is ALREADY_EXISTS, reason IDEMPOTENCY_KEY_REUSED);
3. Product.ReserveStock takes every line or none, reservation id = order id;
4. the total is computed here, in Decimal, from the reserved unit prices;
5. the processor charges the total, the order id being the charge's idempotency key;
6. one transaction writes the items and moves the order from pending to confirmed.

When a step after the claim fails, the order is marked failed and its reservation released and
its charge refunded before the answer. A failure that says nothing about the request (processor
or upstream unavailable) frees the idempotency key so that a retry is a fresh attempt; any other
failure is replayed to retries with the same key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from decimal import Decimal

from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    ServiceError,
    Unavailable,
)
from services.common.tracing.spans import step, traced_step
from services.order.models import (
    CENT,
    FAILED,
    MAX_AMOUNT,
    PENDING,
    Failure,
    NewOrder,
    Order,
    OrderLine,
    ReservedLine,
)
from services.order.payments import PaymentDeclined, PaymentProcessor, PaymentUnavailable
from services.order.settlement import Settlement
from services.order.store import Claim, OrderStore
from services.order.upstream import StockKeeper, UserDirectory
from services.order.validation import request_hash

_CLAIM_ATTEMPTS = 3
_POLL_FIRST, _POLL_MAX = 0.02, 0.2


class OrderPlacement:
    """Places orders; each step is a method so a test can stop between two of them."""

    def __init__(self, *, store: OrderStore, users: UserDirectory, stock: StockKeeper,
                 payments: PaymentProcessor, settlement: Settlement, currency: str,
                 replay_wait: float) -> None:
        self._store = store
        self._users = users
        self._stock = stock
        self._payments = payments
        self._settlement = settlement
        self._currency = currency
        self._replay_wait = replay_wait

    async def place(self, new: NewOrder, *, context=None) -> Order:
        """The confirmed order, or a ServiceError after every step taken was undone."""
        with step("order.check_customer"):  # saga steps are spans while traces are on
            await self._users.ensure_exists(new.customer, context=context)
        claim = await self.claim(new)
        if not claim.created:
            return await self._replay(claim.order_id, context)
        try:
            await self.fulfil(claim.order_id, new, context=context)
        except ServiceError as error:
            await self._give_up(claim.order_id, error)
            raise
        except asyncio.CancelledError:
            # The caller went away: undo now rather than wait for the reconciler.
            await asyncio.shield(self._give_up(
                claim.order_id, Aborted("the request was cancelled", reason="CANCELLED")))
            raise
        except Exception:
            await self._give_up(claim.order_id, ServiceError("internal error"))
            raise
        return await self._placed(claim.order_id)

    @traced_step("order.claim")
    async def claim(self, new: NewOrder) -> Claim:
        """Step 2: the pending order of this request, new or found under its key."""
        digest = request_hash(new)
        for _ in range(_CLAIM_ATTEMPTS):
            claim = await self._store.claim(new, order_id=uuid.uuid4().hex,
                                            request_hash=digest, currency=self._currency)
            if claim is None:
                continue  # the key was freed between our insert and our look-up
            if claim.request_hash != digest:
                raise AlreadyExists(
                    "this idempotency key was used for a different order request",
                    reason="IDEMPOTENCY_KEY_REUSED",
                    metadata={"idempotency_key": new.idempotency_key})
            return claim
        raise Aborted("the idempotency key is busy; retry", reason="IDEMPOTENCY_KEY_BUSY")

    async def fulfil(self, order_id: str, new: NewOrder, *, context=None) -> None:
        """Steps 3 to 6 for a claimed order."""
        reserved = await self.reserve(order_id, new, context=context)
        lines, total = priced_lines(reserved, new.items)
        reference = await self.charge(order_id, total=total, token=new.token)
        with step("order.commit"):
            confirmed = await self._store.confirm(order_id, lines=lines, total=total,
                                                  payment_reference=reference)
        if not confirmed:
            raise Aborted("the order took too long and was given up; retry",
                          reason="ORDER_ABANDONED")

    @traced_step("order.reserve")
    async def reserve(self, order_id: str, new: NewOrder, *, context=None) -> list[ReservedLine]:
        """Step 3: every line or none, under reservation id = order id."""
        return await self._stock.reserve(order_id, new.items, context=context)

    @traced_step("order.charge")
    async def charge(self, order_id: str, *, total: Decimal, token: str) -> str:
        """Step 5: the charge's reference."""
        try:
            return await self._payments.charge(order_id=order_id, amount=total,
                                               currency=self._currency, token=token)
        except PaymentDeclined as error:
            raise FailedPrecondition(f"the payment was declined: {error}",
                                     reason="PAYMENT_DECLINED") from error
        except PaymentUnavailable as error:
            raise Unavailable(f"the payment processor is unavailable: {error}",
                              reason="PAYMENT_PROCESSOR_UNAVAILABLE") from error

    @traced_step("order.compensate")
    async def _give_up(self, order_id: str, error: ServiceError) -> None:
        failed = await self._store.fail(order_id, Failure.of(error))
        # Undo only an order that really failed (here or by the reconciler), never one that
        # got confirmed before an error surfaced.
        if failed or (await self._store.state(order_id)).status == FAILED:
            await self._settlement.try_settle(order_id, FAILED)

    async def _replay(self, order_id: str, context) -> Order:
        """Answers a repeated request as its first call did, once that call has settled."""
        state = await self._store.state(order_id)
        loop = asyncio.get_running_loop()
        remaining = context.time_remaining() if context is not None else None
        wait = self._replay_wait if remaining is None else min(self._replay_wait, remaining)
        deadline = loop.time() + wait - 0.05  # leave time to answer within the deadline
        pause = _POLL_FIRST
        while state.status == PENDING and loop.time() + pause < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
            state = await self._store.state(order_id)
        if state.status == PENDING:
            raise Aborted("an earlier request with this idempotency key is still in progress",
                          reason="ORDER_IN_PROGRESS", metadata={"order_id": order_id})
        if state.status == FAILED:
            raise (state.failure or Failure("ABORTED", "the order failed")).error()
        return await self._placed(order_id)

    async def _placed(self, order_id: str) -> Order:
        order = await self._store.get(order_id)
        if order is None:  # deleted meanwhile by a DeleteOrder that found it confirmed
            raise FailedPrecondition("the order placed with this idempotency key was deleted",
                                     reason="ORDER_DELETED", metadata={"order_id": order_id})
        return order


def priced_lines(reserved: Sequence[ReservedLine],
                 requested: Sequence[tuple[str, int]]) -> tuple[list[OrderLine], Decimal]:
    """Step 4: the order's lines and total from the reserved prices, exact to the cent."""
    if {line.product_id: line.quantity for line in reserved} != dict(requested):
        raise ServiceError("the product service reserved other lines than requested")
    lines = []
    for line in sorted(reserved, key=lambda line: line.product_id):
        unit_price = line.unit_price.quantize(CENT)
        lines.append(OrderLine(product_id=line.product_id, name=line.name,
                               quantity=line.quantity, unit_price=unit_price,
                               line_total=unit_price * line.quantity))
    total = sum((line.line_total for line in lines), Decimal("0.00"))
    if total > MAX_AMOUNT or any(line.unit_price > MAX_AMOUNT for line in lines):
        raise FailedPrecondition(f"the order total exceeds {MAX_AMOUNT}",
                                 reason="TOTAL_TOO_LARGE", metadata={"total": str(total)})
    return lines, total
