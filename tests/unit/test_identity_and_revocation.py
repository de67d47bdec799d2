"""The end user's token as every service checks it, and the revocation decision."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.identity import (
    Claims,
    InvalidToken,
    TokenVerifier,
    bearer_metadata,
    bearer_token,
)
from services.common.revocation import (
    RevocationReader,
    denied_key,
    is_revoked,
    parse_valid_after,
    valid_after_key,
)

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def token(**changes) -> str:
    now = time.time()
    claims = {"sub": "u1", "role": "customer", "iat": now, "exp": now + 60, "iss": "portico",
              "jti": "t1"} | changes
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, KEY, algorithm="EdDSA")


def test_a_good_token_gives_its_claims() -> None:
    claims = TokenVerifier(PUBLIC, issuer="portico").verify(token(role="admin", iat=100.25,
                                                                  exp=2**40))
    assert claims == Claims("u1", "admin", 100.25, float(2**40), "t1") and claims.is_admin


def test_a_token_without_an_id_is_still_good() -> None:
    assert TokenVerifier(PUBLIC, issuer="portico").verify(token(jti=None)).token_id is None


@pytest.mark.parametrize("bad", [
    token(exp=time.time() - 60), token(iss="other"), token(role="root"), token(sub=""),
    token(sub=None), token(iat=None), token(jti=7),
    jwt.encode({"sub": "u1"}, Ed25519PrivateKey.generate(), algorithm="EdDSA"), "garbage"])
def test_anything_else_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(PUBLIC, issuer="portico").verify(bad)


def test_the_bearer_metadata() -> None:
    assert bearer_token([("x-request-id", "r"), bearer_metadata("abc")]) == "abc"
    assert bearer_token([("authorization", b"bearer  xyz ")]) == "xyz"
    assert bearer_token(None) is None and bearer_token([("x-other", "1")]) is None
    for bad in ("Basic abc", "Bearer", "Bearer  "):
        with pytest.raises(InvalidToken):
            bearer_token([("authorization", bad)])


def test_the_keys_are_the_documented_ones() -> None:
    assert valid_after_key("u1") == "portico:auth:valid-after:{user:u1}"
    assert denied_key("u1", "t1") == "portico:auth:denied:{user:u1}:t1"


@pytest.mark.parametrize("issued_at, valid_after, denied, revoked", [
    (100.5, None, False, False),
    (100.5, 100.4, False, False),    # issued after the user's tokens were ended
    (100.5, 100.5, False, True),     # at the moment itself: ended
    (100.5, 100.6, False, True),
    (100.5, None, True, True),       # logged out
])
def test_the_decision(issued_at, valid_after, denied, revoked) -> None:
    claims = Claims("u1", "customer", issued_at, issued_at + 60, "t1")
    assert is_revoked(claims, valid_after, denied) is revoked


def test_an_unreadable_moment_ends_nothing() -> None:
    assert parse_valid_after(b"1700000000.25") == 1700000000.25
    assert parse_valid_after(None) is None and parse_valid_after(b"soon") is None


class _TornDown:
    """A client whose connection was closed under the command: redis-py's asyncio transport
    raises AttributeError then, not ConnectionError (redis/redis-py#4287)."""

    async def mget(self, keys):
        raise AttributeError("'NoneType' object has no attribute 'writelines'")


def test_a_connection_torn_down_under_the_read_is_redis_unavailable() -> None:
    """Found by the multi-host tier: a cluster primary killed under load made CreateOrder fail
    INTERNAL (a 500 at the edge) instead of the documented degraded answer."""
    reader = RevocationReader(_TornDown())
    claims = Claims("u1", "customer", time.time(), time.time() + 60, "t1")
    assert asyncio.run(reader.revoked(claims)) is None
    assert reader.unverified == 1
