"""Input checks of the User service. Internal callers reach it without the gateway, so the
service checks everything itself and reports every bad field of a request at once."""

from __future__ import annotations

import unicodedata

from services.common.errors import InvalidArgument, Violations
from services.user import paging

ROLES = ("customer", "admin")
MAX_EMAIL = 254
MAX_LOCAL_PART = 64
MAX_NAME = 200
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_ID = 64
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def email_problem(email: str) -> str | None:
    """Why `email` is not an acceptable address, or None. Deliberately simple (one @, a local
    part, a dotted domain, no spaces or control characters); the real test is a mail sent."""
    if not email:
        return "required"
    if len(email) > MAX_EMAIL:
        return f"at most {MAX_EMAIL} characters"
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in email):
        return "must not contain spaces or control characters"
    local, at, domain = email.partition("@")
    if not at or "@" in domain:
        return "must contain exactly one @"
    if not local or len(local) > MAX_LOCAL_PART:
        return f"the part before @ must be 1 to {MAX_LOCAL_PART} characters"
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        return "the domain must be dotted names such as example.com"
    return None


def name_problem(name: str) -> str | None:
    stripped = name.strip()
    if not 1 <= len(stripped) <= MAX_NAME:
        return f"1 to {MAX_NAME} characters, not counting surrounding spaces"
    if any(unicodedata.category(ch) == "Cc" for ch in stripped):
        return "must not contain control characters"
    return None


def password_problem(password: str) -> str | None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"{MIN_PASSWORD} to {MAX_PASSWORD} characters"
    return None


def check_email(v: Violations, field: str, email: str) -> None:
    problem = email_problem(email)
    if problem:
        v.add(field, problem)


def check_name(v: Violations, field: str, name: str) -> None:
    problem = name_problem(name)
    if problem:
        v.add(field, problem)


def check_password(v: Violations, field: str, password: str) -> None:
    problem = password_problem(password)
    if problem:
        v.add(field, problem)


def check_role(v: Violations, field: str, role: str) -> None:
    v.check(role in ("", *ROLES), field, "must be customer or admin")


def check_id(v: Violations, field: str, value: str) -> None:
    v.check(0 < len(value) <= MAX_ID, field, f"1 to {MAX_ID} characters")


def check_page(v: Violations, page_size: int, page_token: str) -> None:
    v.check(0 <= page_size <= MAX_PAGE_SIZE, "page_size", f"0 to {MAX_PAGE_SIZE}")
    if page_token:
        try:
            paging.decode(page_token)
        except InvalidArgument:
            v.add("page_token", "not a token returned by ListUsers")
