"""Prices and page tokens of the Product service: exact money, opaque tokens."""

from __future__ import annotations

import pytest

from services.product.models import (
    decode_page_token,
    encode_page_token,
    format_price,
    is_valid_id,
    parse_price,
)


@pytest.mark.parametrize(("text", "cents"), [
    ("0", 0), ("0.00", 0), ("19.99", 1999), ("19.9", 1990), ("0.01", 1), ("007.10", 710),
    ("1000000000", 100_000_000_000), ("1000000000.00", 100_000_000_000),
    ("0.29", 29), ("4.35", 435),  # values a float would round wrongly when times 100
])
def test_parse_price_is_exact(text, cents):
    assert parse_price(text) == cents


@pytest.mark.parametrize("text", [
    "", "NaN", "sNaN", "Infinity", "-0", "-1", "+1", "1e3", "1E2", "1.234", "1.", ".5", " 1",
    "1 ", "1_000", "1,5", "١٢", "1000000000.01", "10000000000", "0x1F", "1.2.3",
])
def test_parse_price_refuses_what_is_not_a_plain_amount(text):
    assert parse_price(text) is None


@pytest.mark.parametrize(("cents", "text"), [
    (0, "0.00"), (5, "0.05"), (50, "0.50"), (1999, "19.99"), (100_000_000_000, "1000000000.00")])
def test_format_price_always_has_two_places(cents, text):
    assert format_price(cents) == text
    assert parse_price(text) == cents


@pytest.mark.parametrize("product_id", ["P001", "a", "sku_1-B", "x" * 64,
                                        "0123456789abcdef0123456789abcdef"])
def test_page_tokens_round_trip_and_are_opaque(product_id):
    token = encode_page_token(product_id)
    assert product_id not in token or len(product_id) < 3
    assert decode_page_token(token) == product_id


@pytest.mark.parametrize("token", ["", "!", "AAAA", "Li4v", "UDAwMQ==", "UDAwMQ=", "P001",
                                   "eHh4" * 30, "w6k"])
def test_foreign_page_tokens_are_refused(token):
    assert decode_page_token(token) is None


@pytest.mark.parametrize(("value", "valid"), [
    ("P001", True), ("a-b_C", True), ("x" * 64, True), ("", False), ("x" * 65, False),
    ("a.b", False), ("$a", False), ("a b", False), ("é", False), ("a\n", False)])
def test_id_shape(value, valid):
    assert is_valid_id(value) is valid
