"""Domain values of the Order service: orders, their lines, statuses, money and failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from services.common.errors import ServiceError

PENDING = "pending"
CONFIRMED = "confirmed"
SHIPPED = "shipped"
DELIVERED = "delivered"
CANCELLED = "cancelled"
FAILED = "failed"

# The statuses of orders that exist for callers; pending and failed rows are internal.
VISIBLE_STATUSES = (CONFIRMED, SHIPPED, DELIVERED, CANCELLED)
# Statuses whose side effects with the Product service and the processor must be finished.
SETTLED_STATUSES = (FAILED, CANCELLED, SHIPPED, DELIVERED)

CENT = Decimal("0.01")
# numeric(12, 2): the largest amount a column can hold.
MAX_AMOUNT = Decimal("9999999999.99")


def money(value: Decimal) -> str:
    """The wire form of an amount: an exact decimal string with two places, such as "0.30"."""
    return str(value.quantize(CENT))


@dataclass(frozen=True)
class OrderLine:
    """One product of an order, priced when the order was placed."""

    product_id: str
    name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True)
class Order:
    """An order as stored."""

    id: str
    customer: str
    status: str
    total: Decimal
    currency: str
    shipping_address: str
    note: str
    payment_reference: str
    created_at: datetime
    updated_at: datetime
    deleted: bool = False
    items: tuple[OrderLine, ...] = ()


@dataclass(frozen=True)
class NewOrder:
    """A validated CreateOrder request: lines merged per product and sorted by product id."""

    customer: str
    items: tuple[tuple[str, int], ...]
    token: str
    shipping_address: str = ""
    note: str = ""
    idempotency_key: str = ""


@dataclass(frozen=True)
class ReservedLine:
    """A line the Product service reserved, with its price and name at reservation time."""

    product_id: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True)
class Failure:
    """Why an order failed, kept on the row so that a retry with its key gets the same answer."""

    code: str
    message: str
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    resource: tuple[str, str] | None = None

    # A failure of these codes says nothing about the request itself, so its idempotency key
    # is freed and a later retry with that key is a fresh attempt.
    TRANSIENT_CODES = ("UNAVAILABLE", "ABORTED", "INTERNAL", "DEADLINE_EXCEEDED")

    @property
    def transient(self) -> bool:
        return self.code in self.TRANSIENT_CODES

    @classmethod
    def of(cls, error: ServiceError) -> Failure:
        return cls(code=error.code.name, message=error.message, reason=error.reason,
                   metadata=dict(error.metadata), resource=error.resource)

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message, "reason": self.reason,
                "metadata": self.metadata, "resource": list(self.resource or ()) or None}

    @classmethod
    def from_json(cls, data: dict) -> Failure:
        resource = data.get("resource")
        return cls(code=data["code"], message=data["message"], reason=data.get("reason"),
                   metadata=dict(data.get("metadata") or {}),
                   resource=tuple(resource) if resource else None)

    def error(self) -> ServiceError:
        """The ServiceError this failure was recorded from (same class, reason and details)."""
        kind = _ERROR_CLASSES.get(self.code, ServiceError)
        return kind(self.message, reason=self.reason, metadata=self.metadata,
                    resource=self.resource)


_ERROR_CLASSES = {kind.code.name: kind for kind in ServiceError.__subclasses__()}
