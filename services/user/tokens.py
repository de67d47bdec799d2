"""Access tokens: JWTs signed with Ed25519 (EdDSA) by the user service, each with a random id
(jti) and a sub-second issue time (iat), so one token can be ended alone (Logout) and a token
issued just after a user's tokens were ended is told apart from those before. The key files are
services.common.jwtkeys' (re-exported here).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from services.common.jwtkeys import (  # noqa: F401 (re-exported)
    KeySettings,
    default_key_paths,
    key_id,
    load_or_create_keys,
    load_private,
    public_key_path,
    public_pem_of,
)

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("sub", "role", "iat", "exp", "iss")


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and its lifetime in seconds."""

    access_token: str
    expires_in: int


class TokenIssuer:
    """Signs access tokens carrying sub (the user id), role, iat (with its fraction of a
    second), exp, iss and jti (a random id)."""

    def __init__(self, private_pem: bytes, *, issuer: str, ttl_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = load_private(private_pem)
        self._issuer = issuer
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self.key_id = key_id(public_pem_of(private_pem))

    def issue(self, *, subject: str, role: str, issued_at: float | None = None) -> IssuedToken:
        """A token for `subject`; `issued_at` (default: now) is its iat, taken by the caller
        before it read what the token states."""
        now = self._clock() if issued_at is None else issued_at
        claims = {"sub": subject, "role": role, "iat": round(now, 6),
                  "exp": int(now) + self.ttl_seconds, "iss": self._issuer,
                  "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.key_id})
        return IssuedToken(token, self.ttl_seconds)


def verify(token: str, public_pem: bytes, issuer: str, *, leeway: float = 0) -> dict[str, Any]:
    """The claims of a token signed by the matching private key, unexpired, from `issuer`, with
    every required claim; raises jwt.InvalidTokenError (or a subclass) otherwise."""
    return jwt.decode(token, public_pem, algorithms=[ALGORITHM], issuer=issuer, leeway=leeway,
                      options={"require": list(REQUIRED_CLAIMS)})
