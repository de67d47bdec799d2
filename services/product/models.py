"""The Product service's domain values, free of protobuf and of any database driver."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

# Product ids and reservation ids share this shape; reservation ids also become field names
# of the `holds` sub-document, which this pattern keeps free of "." and "$".
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# ASCII digits only: `\d` would also accept other scripts' digits, which Decimal then parses.
_PRICE = re.compile(r"[0-9]{1,10}(\.[0-9]{1,2})?")
MAX_PRICE_CENTS = 1_000_000_000 * 100


def is_valid_id(value: str) -> bool:
    """True for a client-chosen product or reservation id."""
    return ID_PATTERN.fullmatch(value) is not None


def parse_price(text: str) -> int | None:
    """Cents of a decimal string such as "19.99", or None when it is not an allowed price.

    Exact: money never goes through a float. Rejects signs, exponents, NaN, more than two
    places and anything above 1,000,000,000.
    """
    if _PRICE.fullmatch(text) is None:
        return None
    try:
        cents = int(Decimal(text) * 100)
    except InvalidOperation:
        return None
    return cents if cents <= MAX_PRICE_CENTS else None


def format_price(cents: int) -> str:
    """The API form of a price: exactly two places, such as "19.90"."""
    return f"{cents // 100}.{cents % 100:02d}"


def encode_page_token(last_id: str) -> str:
    """Opaque token for the page after `last_id`."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> str | None:
    """The last id a token stands for, or None when the token was not made by us."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        last_id = raw.decode("ascii")
    except (binascii.Error, ValueError):
        return None
    if not is_valid_id(last_id) or encode_page_token(last_id) != token:
        return None
    return last_id


@dataclass(frozen=True)
class Product:
    """A catalogue entry; `price_cents` is the exact unit price in cents."""

    id: str
    name: str
    description: str
    price_cents: int
    stock: int
    attributes: dict
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NewProduct:
    """What CreateProduct asks for; `id` is None when the server should choose it."""

    id: str | None
    name: str
    description: str
    price_cents: int
    stock: int
    attributes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ProductChanges:
    """The fields UpdateProduct sets; None means "keep the current value"."""

    name: str | None = None
    description: str | None = None
    price_cents: int | None = None
    stock: int | None = None
    attributes: dict | None = None


@dataclass(frozen=True)
class ReservedLine:
    """One reserved line with the name and unit price it was reserved at."""

    product_id: str
    quantity: int
    unit_price_cents: int
    name: str
