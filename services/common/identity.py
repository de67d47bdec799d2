"""The end user's identity as it travels with a call: an access token in `authorization: Bearer
<jwt>` metadata (an HTTP header at the edge), checked with the public key alone.

The checks are the edge's: EdDSA signature, issuer, exp and iat (with a little leeway for clocks),
a non-empty sub and a known role. One module for every service and, later, the gateway: it
imports neither.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

ALGORITHM = "EdDSA"
AUTHORIZATION_KEY = "authorization"
ROLES = frozenset({"customer", "admin"})
REQUIRED_CLAIMS = ("sub", "role", "iat", "exp", "iss")


class InvalidToken(Exception):
    """A token that is present but not good now; the message says why (never the token)."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a good access token says: whose it is, their role, when it was issued and expires,
    and its id (jti; None on tokens made before ids were added)."""

    subject: str
    role: str
    issued_at: float
    expires_at: float
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """The role the token claims; whether it still holds is revocation's question."""
        return self.role == "admin"


class TokenVerifier:
    """Verifies access tokens; remembers recent good ones until they expire, so a token seen on
    every call costs a dictionary look-up after its first signature check."""

    def __init__(self, public_key_pem: bytes, *, issuer: str, leeway: float = 5.0,
                 cache_size: int = 10_000) -> None:
        self._jwt = jwt.PyJWT(options={"require": list(REQUIRED_CLAIMS)})
        self._public_key = public_key_pem
        self._issuer = issuer
        self._leeway = leeway
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str) -> Claims:
        """The token's claims; InvalidToken for any token that is not good now."""
        cached = self._cache.get(token)
        if cached is not None and cached.expires_at + self._leeway > time.time():
            self._cache.move_to_end(token)
            return cached
        claims = self._decode(token)
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            raw = self._jwt.decode(token, self._public_key, algorithms=[ALGORITHM],
                                   issuer=self._issuer, leeway=self._leeway)
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the access token has expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("the access token is not valid") from None
        subject, role, token_id = raw.get("sub"), raw.get("role"), raw.get("jti")
        if not isinstance(subject, str) or not subject or role not in ROLES \
                or not (token_id is None or isinstance(token_id, str)):
            raise InvalidToken("the access token is not valid")
        return Claims(subject, role, float(raw["iat"]), float(raw["exp"]), token_id or None)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of the `authorization` metadata, None when there is none; InvalidToken when
    the entry is there but is not `Bearer <token>`."""
    for key, value in metadata or ():
        if key != AUTHORIZATION_KEY:
            continue
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("use authorization: Bearer <token>")
        return token.strip()
    return None


def bearer_metadata(token: str) -> tuple[str, str]:
    """The metadata entry that carries `token` on a call."""
    return (AUTHORIZATION_KEY, f"Bearer {token}")
