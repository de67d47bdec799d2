"""Page tokens of ListUsers: an opaque urlsafe base64 of the last row's (created_at, id)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import InvalidArgument

MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class Cursor:
    """The position after which the next page starts."""

    created_at: datetime
    id: str


def encode(cursor: Cursor) -> str:
    raw = json.dumps([cursor.created_at.isoformat(), cursor.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode(token: str) -> Cursor:
    """The cursor in `token`; InvalidArgument on field page_token when it is not one of ours."""
    try:
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, row_id = json.loads(raw)
        if not isinstance(created_at, str) or not isinstance(row_id, str):
            raise ValueError("wrong types")
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None or not 0 < len(row_id) <= 64:
            raise ValueError("incomplete")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidArgument("malformed page token", violations=[
            ("page_token", "not a token returned by ListUsers")]) from error
    return Cursor(when, row_id)
