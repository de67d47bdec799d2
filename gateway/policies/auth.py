"""Sign-in at the edge: bearer JWTs verified with the public key alone, no call per request.

A request without an Authorization header is anonymous; the routes decide what anonymous callers
may do. A header that is present but not a valid token (malformed, expired, wrongly signed, from
another issuer, too long to be one of ours) is a 401 on every route, so a client learns at once
that its token is bad.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt

from gateway.errors import Problem

ROLES = frozenset({"customer", "admin"})
# Tokens we issue are a few hundred bytes; anything much longer is refused unread.
MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's subject (a user id) and role."""

    subject: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class TokenVerifier:
    """Verifies EdDSA-signed access tokens; remembers recent good ones until they expire (at
    most `cache_size` of them, each at most MAX_TOKEN_BYTES long)."""

    def __init__(self, public_key_pem: bytes, *, issuer: str, cache_size: int = 10_000,
                 leeway: float = 5.0) -> None:
        self._jwt = jwt.PyJWT(options={"require": ["exp", "iat", "sub"]})
        self._public_key = public_key_pem
        self._issuer = issuer
        self._leeway = leeway
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_file(cls, path: Path, *, issuer: str) -> TokenVerifier:
        try:
            return cls(path.read_bytes(), issuer=issuer)
        except FileNotFoundError:
            raise ValueError(
                f"the JWT public key {path} does not exist: start the user service once "
                "(it creates a development key pair) or set PORTICO_JWT_PUBLIC_KEY_FILE"
            ) from None

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of an Authorization header, None without one; raises Problem(401)
        for a header that is not a good bearer token now."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _invalid("use an Authorization: Bearer <token> header")
        if len(token) > MAX_TOKEN_BYTES:
            raise _invalid("the access token is not valid")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        """The token's principal; raises Problem(401) for any token that is not good now."""
        cached = self._cache.get(token)
        if cached is not None and cached[1] > time.time():
            self._cache.move_to_end(token)
            return cached[0]
        try:
            claims = self._jwt.decode(token, self._public_key, algorithms=["EdDSA"],
                                      issuer=self._issuer, leeway=self._leeway)
        except jwt.ExpiredSignatureError:
            raise _invalid("the access token has expired") from None
        except jwt.PyJWTError:
            raise _invalid("the access token is not valid") from None
        subject, role = claims.get("sub"), claims.get("role")
        if not isinstance(subject, str) or not subject or role not in ROLES:
            raise _invalid("the access token is not valid")
        principal = Principal(subject, role)
        self._cache[token] = (principal, float(claims["exp"]))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal


def _invalid(detail: str) -> Problem:
    return Problem(401, detail, code="INVALID_TOKEN",
                   headers={"WWW-Authenticate": f'Bearer realm="portico", error="invalid_token", '
                                                f'error_description="{detail}"'})
