"""Sign-in at the edge: bearer JWTs verified with the public key alone (the services' own checks,
services/common/identity.py), and the revocation decision made on what the rate limiter read in
its round trip.

A request without an Authorization header is anonymous; the routes decide what anonymous callers
may do. A header that is present but not a valid token (malformed, expired, wrongly signed, from
another issuer, too long to be one of ours, revoked) is a 401 on every route, so a client learns
at once that its token is bad.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from gateway.errors import Problem
from gateway.policies.redis import RedisLink
from services.common.identity import Claims, InvalidToken, TokenVerifier
from services.common.revocation import denied_key, is_revoked, parse_valid_after, valid_after_key

# Tokens we issue are a few hundred bytes; anything much longer is refused unread.
MAX_TOKEN_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's claims, the token itself (passed on to the services, which
    check it again), and whether its revocation state is known (False while Redis is down)."""

    claims: Claims
    token: str
    verified: bool = True

    @property
    def subject(self) -> str:
        return self.claims.subject

    @property
    def is_admin(self) -> bool:
        return self.claims.is_admin


class Authenticator:
    """Verifies bearer tokens (remembering recent good ones until they expire: at most 10,000,
    each at most MAX_TOKEN_BYTES long) and decides on their revocation."""

    def __init__(self, public_key_pem: bytes, *, issuer: str) -> None:
        self._verifier = TokenVerifier(public_key_pem, issuer=issuer)

    @classmethod
    def from_file(cls, path: Path, *, issuer: str) -> Authenticator:
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
            raise invalid("use an Authorization: Bearer <token> header")
        if len(token) > MAX_TOKEN_BYTES:
            raise invalid("the access token is not valid")
        try:
            return Principal(self._verifier.verify(token), token)
        except InvalidToken as error:
            raise invalid(str(error)) from None


class Revocations:
    """Reads a token's revocation keys on its own, when the rate limiter did not (it is off, or
    the request was not limited): one round trip through the edge's Redis link."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._read = link.script("return redis.call('MGET', unpack(KEYS))")

    async def values(self, keys: tuple[str, ...]) -> tuple[bytes | None, ...] | None:
        """The keys' values, or None when Redis is down."""
        if not self._link.usable:
            return None
        reply = await self._link.run(self._read, list(keys), [], concern="revocation")
        return tuple(reply) if reply is not None else None


def revocation_keys(principal: Principal) -> tuple[str, ...]:
    """The Redis keys that say whether the principal's token was revoked (read along with the
    rate limiter's token)."""
    claims = principal.claims
    if claims.token_id is None:
        return (valid_after_key(claims.subject),)
    return (valid_after_key(claims.subject), denied_key(claims.subject, claims.token_id))


def checked(principal: Principal, values: tuple[bytes | None, ...] | None) -> Principal:
    """The principal once its revocation keys' `values` were read (None: they could not be,
    Redis is down); raises Problem(401) for a revoked token."""
    if values is None:
        return replace(principal, verified=False)
    denied = len(values) > 1 and values[1] is not None
    if is_revoked(principal.claims, parse_valid_after(values[0]), denied):
        raise invalid("the access token has been revoked", code="TOKEN_REVOKED")
    return principal


def invalid(detail: str, *, code: str = "INVALID_TOKEN") -> Problem:
    return Problem(401, detail, code=code,
                   headers={"WWW-Authenticate": f'Bearer realm="portico", error="invalid_token", '
                                                f'error_description="{detail}"'})
