"""Rights that end: the moment a user's tokens stopped being valid, and tokens ended one by one.

The user service writes, the services (and the gateway) read, all through the names defined here
(`<sub>` is the user's id, `<jti>` the token's):

    portico:auth:valid-after:{user:<sub>}     seconds since the epoch (a float); a token of
                                              that user issued at or before it is revoked
                                              (deletion, role change, password change). Kept
                                              for the token lifetime.
    portico:auth:denied:{user:<sub>}:<jti>    "1": that one token is revoked (Logout). Kept
                                              until the token's own expiry.

Both are hash-tagged with the user (Redis Cluster hashes only the part in braces; the `user:`
keeps a tag from being empty, which would hash the whole name instead): a token's two
keys are in one slot, so one MGET (or one script at the edge) reads them on a cluster too. A tag
per token for the denied key would spread logouts a little more, but would put every check in
two slots, two commands; a user's keys are few and small, so a slot per user is no hot spot.

Every call reads both keys of its token in one round trip (MGET); an answer is remembered for at
most `memo_seconds` (0.5), so a revocation is seen everywhere within a second. When Redis cannot
be read the answer is None (unknown): the caller decides what an unverified token may still do.
"""

from __future__ import annotations

import logging
import time

from services.common.identity import Claims
from services.common.redisconn import FAILURES, AnyRedis, RedisMode, connect

log = logging.getLogger("portico.revocation")

PREFIX = "portico:auth"


def user_tag(subject: str) -> str:
    """The hash tag of a user's revocation keys."""
    return f"{{user:{subject}}}"


def valid_after_key(subject: str) -> str:
    """Holds the moment the tokens of user `subject` stopped being valid."""
    return f"{PREFIX}:valid-after:{user_tag(subject)}"


def denied_key(subject: str, token_id: str) -> str:
    """Exists while the token with this jti (of user `subject`) is ended (logged out)."""
    return f"{PREFIX}:denied:{user_tag(subject)}:{token_id}"


def is_revoked(claims: Claims, valid_after: float | None, denied: bool) -> bool:
    """The decision: ended by its id, or issued at or before its user's tokens were ended."""
    return denied or (valid_after is not None and claims.issued_at <= valid_after)


def parse_valid_after(raw: bytes | str | None) -> float | None:
    """The stored moment, or None when absent or unreadable (then it ends nothing)."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def redis_client(url: str, *, timeout: float, mode: RedisMode = "standalone") -> AnyRedis:
    """A client that fails fast: a Redis that does not answer within `timeout` counts as down."""
    return connect(url, mode=mode, timeout=timeout, connect_timeout=timeout)


class RevocationReader:
    """Answers "is this token revoked?" from Redis: True, False, or None when Redis cannot be
    read (or none is configured). After a failure Redis is not asked again for `retry_after`
    seconds, so an outage costs calls no waiting. `unverified` counts the calls answered None."""

    def __init__(self, client: AnyRedis | None, *, memo_seconds: float = 0.5,
                 retry_after: float = 0.5, memo_size: int = 10_000) -> None:
        self._client = client
        self._memo_seconds = memo_seconds
        self._retry_after = retry_after
        self._memo: dict[tuple[str, str | None], tuple[bool, float]] = {}
        self._memo_size = memo_size
        self._down_until = 0.0
        self._down = False
        self.unverified = 0

    async def revoked(self, claims: Claims) -> bool | None:
        key = (claims.subject, claims.token_id)
        now = time.monotonic()
        known = self._memo.get(key)
        if known is not None and known[1] > now:
            return known[0]
        answer = await self._ask(claims, now)
        if answer is not None:
            if len(self._memo) >= self._memo_size:
                self._memo.clear()  # simpler than LRU, and a refill costs one MGET per token
            self._memo[key] = (answer, now + self._memo_seconds)
        return answer

    async def _ask(self, claims: Claims, now: float) -> bool | None:
        if self._client is None or now < self._down_until:
            return self._unknown(None)
        keys = [valid_after_key(claims.subject)]
        if claims.token_id:
            keys.append(denied_key(claims.subject, claims.token_id))
        try:
            values = await self._client.mget(keys)  # one slot: both keys carry the user's tag
        except FAILURES as error:
            self._down_until = time.monotonic() + self._retry_after
            return self._unknown(error)
        if self._down:
            log.warning("revocation checks resumed", extra={"unverified_calls": self.unverified})
            self._down = False
        denied = len(values) > 1 and values[1] is not None
        return is_revoked(claims, parse_valid_after(values[0]), denied)

    def _unknown(self, error: BaseException | None) -> None:
        self.unverified += 1
        if not self._down:
            self._down = True
            log.error("revocation cannot be checked: Redis unavailable; customer tokens are "
                      "accepted unverified and admin rights refused until it answers",
                      extra={"error": str(error) if error else "no Redis configured"})
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
