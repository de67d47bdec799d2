"""Checks of ProductService requests: every bad field reported at once, as field violations.

Each function reads one request message and returns the domain values the store takes, or
raises InvalidArgument listing every violation of that request.
"""

from __future__ import annotations

import unicodedata

from google.protobuf import json_format, struct_pb2

from portico.product.v1 import product_pb2
from services.common.errors import Violations
from services.product.models import (
    NewProduct,
    ProductChanges,
    decode_page_token,
    is_valid_id,
    parse_price,
)

MAX_NAME = 200
MAX_DESCRIPTION = 5000
MAX_STOCK = 1_000_000_000
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_ITEMS = 100
MAX_QUANTITY = 1_000_000
# Attributes are small descriptive data, not a document store.
MAX_ATTRIBUTES_BYTES = 16 * 1024
MAX_ATTRIBUTES_DEPTH = 8

ID_RULE = 'letters, digits, "-" and "_", 1 to 64 characters'


def product_id(value: str, field: str = "id") -> str:
    """A product id given to Get, Update or Delete."""
    violations = Violations()
    _check_id(violations, value, field)
    violations.raise_if_any()
    return value


def reservation_id(value: str) -> str:
    violations = Violations()
    _check_id(violations, value, "reservation_id")
    violations.raise_if_any()
    return value


def list_query(request: product_pb2.ListProductsRequest) -> tuple[int, str | None, str]:
    """(page size, id to continue after, name prefix) of a ListProducts request."""
    violations = Violations()
    violations.check(0 <= request.page_size <= MAX_PAGE_SIZE, "page_size",
                     f"must be between 0 and {MAX_PAGE_SIZE}")
    after = None
    if request.page_token:
        after = decode_page_token(request.page_token)
        violations.check(after is not None, "page_token", "is not a token this service issued")
    if len(request.name) > MAX_NAME or _has_control(request.name):
        violations.add("name", f"must be at most {MAX_NAME} characters, without control "
                               "characters")
    violations.raise_if_any()
    return request.page_size or DEFAULT_PAGE_SIZE, after, request.name


def new_product(request: product_pb2.CreateProductRequest) -> NewProduct:
    violations = Violations()
    if request.id:
        _check_id(violations, request.id, "id")
    _check_name(violations, request.name)
    _check_description(violations, request.description)
    price = _price(violations, request.price)
    _check_stock(violations, request.stock)
    attributes = _attributes(violations, request.attributes)
    violations.raise_if_any()
    return NewProduct(id=request.id or None, name=request.name,
                      description=request.description, price_cents=price,
                      stock=request.stock, attributes=attributes)


def product_changes(request: product_pb2.UpdateProductRequest) -> ProductChanges:
    """Only the fields present in the request (proto3 optional presence)."""
    violations = Violations()
    _check_id(violations, request.id, "id")
    changes: dict = {}
    if request.HasField("name"):
        _check_name(violations, request.name)
        changes["name"] = request.name
    if request.HasField("description"):
        _check_description(violations, request.description)
        changes["description"] = request.description
    if request.HasField("price"):
        changes["price_cents"] = _price(violations, request.price)
    if request.HasField("stock"):
        _check_stock(violations, request.stock)
        changes["stock"] = request.stock
    if request.HasField("attributes"):
        changes["attributes"] = _attributes(violations, request.attributes)
    violations.raise_if_any()
    return ProductChanges(**changes)


def stock_items(request: product_pb2.ReserveStockRequest) -> list[tuple[str, int]]:
    """(product id, quantity) lines; a product listed twice is refused, not merged, because
    the caller most likely made a mistake it should hear about."""
    violations = Violations()
    _check_id(violations, request.reservation_id, "reservation_id")
    if not request.items:
        violations.add("items", "must list at least one item")
    if len(request.items) > MAX_ITEMS:
        violations.add("items", f"must list at most {MAX_ITEMS} items")
    seen: set[str] = set()
    for index, item in enumerate(request.items):
        field = f"items[{index}]"
        _check_id(violations, item.product_id, f"{field}.product_id")
        if item.product_id in seen:
            violations.add(f"{field}.product_id", "appears more than once")
        seen.add(item.product_id)
        violations.check(1 <= item.quantity <= MAX_QUANTITY, f"{field}.quantity",
                         f"must be between 1 and {MAX_QUANTITY}")
    violations.raise_if_any()
    return [(item.product_id, item.quantity) for item in request.items]


def _check_id(violations: Violations, value: str, field: str) -> None:
    violations.check(is_valid_id(value), field, f"must be {ID_RULE}")


def _check_name(violations: Violations, value: str) -> None:
    ok = 1 <= len(value) <= MAX_NAME and value.strip() != "" and not _has_control(value)
    violations.check(ok, "name", f"must be 1 to {MAX_NAME} characters, not blank, without "
                                 "control characters")


def _check_description(violations: Violations, value: str) -> None:
    ok = len(value) <= MAX_DESCRIPTION and not _has_control(value.replace("\n", "")
                                                            .replace("\t", "").replace("\r", ""))
    violations.check(ok, "description", f"must be at most {MAX_DESCRIPTION} characters, "
                                        "without control characters other than line breaks "
                                        "and tabs")


def _check_stock(violations: Violations, value: int) -> None:
    violations.check(0 <= value <= MAX_STOCK, "stock", f"must be between 0 and {MAX_STOCK}")


def _price(violations: Violations, text: str) -> int:
    cents = parse_price(text)
    if cents is None:
        violations.add("price", 'must be a decimal with at most 2 places between "0" and '
                                '"1000000000", such as "19.99"')
        return 0
    return cents


def _attributes(violations: Violations, struct: struct_pb2.Struct) -> dict:
    if struct.ByteSize() > MAX_ATTRIBUTES_BYTES:
        violations.add("attributes", f"must encode to at most {MAX_ATTRIBUTES_BYTES} bytes")
        return {}
    try:
        value = json_format.MessageToDict(struct)
    except ValueError:  # NaN and infinities have no JSON form
        violations.add("attributes", "numbers must be finite")
        return {}
    problem = _key_problem(value, depth=1)
    if problem:
        violations.add("attributes", problem)
    return value


def _key_problem(value: object, *, depth: int) -> str | None:
    """Why a key cannot be stored as a MongoDB field name (operators, paths), if it cannot."""
    if depth > MAX_ATTRIBUTES_DEPTH:
        return f"must nest at most {MAX_ATTRIBUTES_DEPTH} levels deep"
    children: list = []
    if isinstance(value, dict):
        for key, child in value.items():
            if not key or key.startswith("$") or "." in key or _has_control(key):
                return f'key {key!r} must be non-empty, not start with "$", not contain "."'
            children.append(child)
    elif isinstance(value, list):
        children = value
    for child in children:
        problem = _key_problem(child, depth=depth + 1)
        if problem:
            return problem
    return None


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)
