"""The User service's input checks and its page tokens, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument, Violations
from services.user import paging, validation


@pytest.mark.parametrize("email", [
    "ann@example.com", "Ann.Smith+tag@Example.co.uk", "a@b.co", "josé@exämple.com",
    "x" * 64 + "@example.com", "a" * 64 + "@" + "b" * 185 + ".com",  # 254 characters
])
def test_good_emails(email: str) -> None:
    assert validation.email_problem(email) is None


@pytest.mark.parametrize("email", [
    "", "plain", "@example.com", "ann@", "ann@example", "ann@@example.com", "a@b@example.com",
    "ann@.example.com", "ann@example..com", "ann@example.com.", "ann @example.com",
    "ann@example.com\n", "\tann@example.com", "ann\x00@example.com",
    "x" * 65 + "@example.com", "a" * 64 + "@" + "b" * 186 + ".com",  # 255 characters
])
def test_bad_emails(email: str) -> None:
    assert validation.email_problem(email)


@pytest.mark.parametrize(("name", "ok"), [
    ("Ann", True), ("  Ann  ", True), ("x" * 200, True), ("  " + "x" * 200 + "  ", True),
    ("Zoë O'Brien-Łukasz", True), ("", False), ("   ", False), ("x" * 201, False),
    ("a\nb", False), ("a\x7fb", False), ("a\x00b", False),
])
def test_names(name: str, ok: bool) -> None:
    assert (validation.name_problem(name) is None) == ok


@pytest.mark.parametrize(("password", "ok"), [
    ("x" * 7, False), ("x" * 8, True), ("x" * 256, True), ("x" * 257, False),
    ("ünïcødé!", True), ("", False),
])
def test_passwords(password: str, ok: bool) -> None:
    assert (validation.password_problem(password) is None) == ok


@pytest.mark.parametrize(("role", "ok"), [
    ("", True), ("customer", True), ("admin", True), ("Admin", False), ("root", False),
])
def test_roles(role: str, ok: bool) -> None:
    found = Violations()
    validation.check_role(found, "role", role)
    assert (found.items == []) == ok


def test_every_violation_is_collected_before_raising() -> None:
    found = Violations()
    validation.check_id(found, "id", "")
    validation.check_name(found, "name", "")
    validation.check_email(found, "email", "nope")
    validation.check_password(found, "password", "short")
    validation.check_page(found, 500, "garbage!")
    with pytest.raises(InvalidArgument) as caught:
        found.raise_if_any()
    assert [f for f, _ in caught.value.violations] == [
        "id", "name", "email", "password", "page_size", "page_token"]


def test_a_page_token_round_trips() -> None:
    cursor = paging.Cursor(datetime(2025, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), "abc123")
    token = paging.encode(cursor)
    assert "=" not in token and token.isascii()
    assert paging.decode(token) == cursor
    found = Violations()
    validation.check_page(found, 100, token)
    assert found.items == []


def test_a_truncated_page_token_is_invalid() -> None:
    token = paging.encode(paging.Cursor(datetime(2025, 1, 1, tzinfo=UTC), "abc"))
    with pytest.raises(InvalidArgument) as caught:
        paging.decode(token[:-3])
    assert caught.value.violations[0][0] == "page_token"
