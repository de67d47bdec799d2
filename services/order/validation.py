"""Checks of the Order service's requests, all bad fields reported at once as field violations.

Works on plain values (the servicer unpacks the protobuf messages), so every rule is testable
without a server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import Violations
from services.order.models import CANCELLED, DELIVERED, SHIPPED, NewOrder

MAX_LINES = 100
MAX_QUANTITY = 1_000_000
MAX_CUSTOMER = 200
MAX_ADDRESS = 500
MAX_NOTE = 1000
MAX_KEY = 200
MAX_ID = 200
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# The Product service's id rule (and the reservation id rule, which order ids also follow).
PRODUCT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
STATUS_TARGETS = (SHIPPED, DELIVERED, CANCELLED)


@dataclass(frozen=True)
class OrderChange:
    """The parts of an UpdateOrder request that are present."""

    shipping_address: str | None = None
    note: str | None = None
    status: str | None = None


def new_order(
    *,
    customer: str,
    items: Iterable[tuple[str, int]],
    token: str,
    shipping_address: str = "",
    note: str = "",
    idempotency_key: str = "",
) -> NewOrder:
    """A validated order request with its lines merged per product, or InvalidArgument."""
    problems = Violations()
    _text(problems, "customer", customer, limit=MAX_CUSTOMER, required=True)
    merged = _merged_items(problems, list(items))
    _text(problems, "payment.token", token, limit=MAX_ID, required=True)
    _text(problems, "shipping_address", shipping_address, limit=MAX_ADDRESS)
    _text(problems, "note", note, limit=MAX_NOTE)
    _text(problems, "idempotency_key", idempotency_key, limit=MAX_KEY)
    problems.raise_if_any("the order request has invalid fields")
    return NewOrder(customer=customer, items=merged, token=token,
                    shipping_address=shipping_address, note=note,
                    idempotency_key=idempotency_key)


def _merged_items(problems: Violations, items: list[tuple[str, int]]) -> tuple:
    if not 1 <= len(items) <= MAX_LINES:
        problems.add("items", f"give 1 to {MAX_LINES} lines, not {len(items)}")
    totals: dict[str, int] = {}
    for index, (product_id, quantity) in enumerate(items):
        if not PRODUCT_ID.fullmatch(product_id):
            problems.add(f"items[{index}].product_id",
                         "must be 1 to 64 letters, digits, '-' or '_'")
        if not 1 <= quantity <= MAX_QUANTITY:
            problems.add(f"items[{index}].quantity", f"must be 1 to {MAX_QUANTITY}")
            continue
        totals[product_id] = totals.get(product_id, 0) + quantity
    for product_id, quantity in totals.items():
        if quantity > MAX_QUANTITY:
            problems.add("items", f"{product_id}: merged quantity exceeds {MAX_QUANTITY}")
    return tuple(sorted(totals.items()))


def _text(problems: Violations, name: str, value: str, *, limit: int,
          required: bool = False) -> None:
    if required and not value:
        problems.add(name, "is required")
    elif len(value) > limit:
        problems.add(name, f"must be at most {limit} characters")
    elif "\x00" in value:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail in the database.
        problems.add(name, "must not contain NUL characters")


def request_hash(order: NewOrder) -> str:
    """A digest of everything that makes two CreateOrder requests the same request."""
    canonical = json.dumps(
        [order.customer, order.items, order.token, order.shipping_address, order.note],
        separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def order_ref(order_id: str, customer: str) -> None:
    """Checks the id and customer filter of Get/Update/DeleteOrder."""
    problems = Violations()
    _text(problems, "id", order_id, limit=MAX_ID, required=True)
    _text(problems, "customer", customer, limit=MAX_CUSTOMER)
    problems.raise_if_any()


def order_change(order_id: str, customer: str, change: OrderChange) -> None:
    """Checks an UpdateOrder request; it must change at least one thing."""
    problems = Violations()
    _text(problems, "id", order_id, limit=MAX_ID, required=True)
    _text(problems, "customer", customer, limit=MAX_CUSTOMER)
    if change.shipping_address is not None:
        _text(problems, "shipping_address", change.shipping_address, limit=MAX_ADDRESS)
    if change.note is not None:
        _text(problems, "note", change.note, limit=MAX_NOTE)
    if change.status is not None and change.status not in STATUS_TARGETS:
        problems.add("status", "must be one of " + ", ".join(STATUS_TARGETS))
    if change == OrderChange():
        problems.add("shipping_address", "give shipping_address, note or status to change")
    problems.raise_if_any()


@dataclass(frozen=True)
class PageRequest:
    """A validated ListOrders request."""

    size: int
    after: tuple[datetime, str] | None
    customer: str


def page_request(*, page_size: int, page_token: str, customer: str) -> PageRequest:
    problems = Violations()
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        problems.add("page_size", f"must be 1 to {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})")
    _text(problems, "customer", customer, limit=MAX_CUSTOMER)
    after = None
    if page_token:
        try:
            after = decode_page_token(page_token)
        except ValueError:
            problems.add("page_token", "is not a token returned by ListOrders")
    problems.raise_if_any()
    return PageRequest(size=page_size or DEFAULT_PAGE_SIZE, after=after, customer=customer)


def encode_page_token(created_at: datetime, order_id: str) -> str:
    """An opaque token for the position after the order (created_at, id)."""
    raw = json.dumps([created_at.isoformat(), order_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    """The position in a token; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        stamp, order_id = json.loads(raw)
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError) as error:
        raise ValueError("malformed page token") from error
    if created_at.tzinfo is None or not isinstance(order_id, str) or "\x00" in order_id:
        raise ValueError("malformed page token")
    return created_at, order_id

