"""Payment processors behind one interface, chosen by name in settings.

A processor charges an order once (the order id is the idempotency key of the charge) and
refunds a charge once; both calls can be repeated safely, which is what lets a crashed or
retried placement be undone by order id alone. Adding a real processor means writing a class
with these methods and one entry in PROCESSORS; the order logic does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from services.common.db import postgres_retry
from services.order.payment_store import PaymentLedger


class PaymentError(Exception):
    """A charge that did not go through."""


class PaymentDeclined(PaymentError):
    """The processor refused the charge; retrying will not help."""


class PaymentUnavailable(PaymentError):
    """The processor could not be reached or failed transiently; the charge was not made."""


class PaymentProcessor(Protocol):
    """What the order logic needs from a payment processor."""

    async def charge(self, *, order_id: str, amount: Decimal, currency: str,
                     token: str) -> str:
        """Charges `amount` for the order and returns the charge's reference. A second charge
        for the same order id returns the first one's reference and charges nothing."""

    async def refund(self, *, reference: str) -> None:
        """Refunds a charge in full; refunding a refunded charge does nothing."""

    async def find_charge(self, *, order_id: str) -> str | None:
        """The reference of the order's charge, or None when it was never charged."""


class SimulatedPaymentProcessor:
    """A deterministic processor for development and tests, with its ledger in PostgreSQL.

    Tokens: "tok_visa" approves, "tok_decline" declines, "tok_error" fails transiently; any
    other token is declined.
    """

    APPROVE = "tok_visa"
    ERROR = "tok_error"

    def __init__(self, ledger: PaymentLedger) -> None:
        self._ledger = ledger

    async def charge(self, *, order_id: str, amount: Decimal, currency: str,
                     token: str) -> str:
        if token == self.ERROR:
            raise PaymentUnavailable("the payment processor is not answering")
        if token != self.APPROVE:
            raise PaymentDeclined("the card was declined")
        return await self._ledger.capture(order_id=order_id, amount=amount, currency=currency)

    async def refund(self, *, reference: str) -> None:
        await self._ledger.refund(reference)

    async def find_charge(self, *, order_id: str) -> str | None:
        return await self._ledger.find(order_id)


@dataclass(frozen=True)
class ProcessorDeps:
    """What a processor factory may use: the settings and the service's database engine."""

    settings: Any
    engine: Any


ProcessorFactory = Callable[[ProcessorDeps], PaymentProcessor]

PROCESSORS: dict[str, ProcessorFactory] = {
    "simulated": lambda deps: SimulatedPaymentProcessor(PaymentLedger(
        deps.engine, retry=postgres_retry(deps.settings.store_retry_seconds))),
}


def payment_processor(name: str, deps: ProcessorDeps) -> PaymentProcessor:
    """The processor registered under `name` (settings.payment_processor)."""
    factory = PROCESSORS.get(name)
    if factory is None:
        known = ", ".join(sorted(PROCESSORS))
        raise ValueError(f"unknown payment processor {name!r} (known: {known})")
    return factory(deps)
