"""Login throttling per account, in Redis, shared by every user-service instance.

Each attempt on an email is counted as a failure before the password is checked (so a burst of
concurrent guesses is counted whole), and a success clears the count. The first
`free_failures - 1` failures cost nothing; from then on each attempt opens a pause that doubles
(`base_seconds`, 2x, 4x ... up to `max_seconds`), and an attempt during the pause is refused at
once with RESOURCE_EXHAUSTED and a google.rpc.RetryInfo (the edge answers 429 + Retry-After).
The throttle is per account, whoever calls: the gateway, or an internal program over gRPC.

When Redis cannot be reached logins are not throttled (logged once); the bound on concurrent
hashes still limits how fast passwords can be tried.

The bucket is one key, the only key its script and the success's DEL touch, so it needs no hash
tag on a Redis Cluster: accounts spread over the slots by their digests.
"""

from __future__ import annotations

import hashlib
import logging

from services.common.errors import ResourceExhausted
from services.common.redisconn import FAILURES, AnyRedis

log = logging.getLogger("portico.user.throttle")

PREFIX = "portico:auth:login"

# KEYS[1] the account's bucket; ARGV: free failures, base pause ms, max pause ms, ttl ms.
# Returns the milliseconds to wait (0: go ahead, counted as a failure until it succeeds).
_ATTEMPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'failures', 'until')
local failures = tonumber(state[1]) or 0
local pause_until = tonumber(state[2]) or 0
if pause_until > now then
  return pause_until - now
end
failures = failures + 1
local pause = 0
local free = tonumber(ARGV[1])
if failures >= free then
  pause = math.min(tonumber(ARGV[2]) * 2 ^ (failures - free), tonumber(ARGV[3]))
end
redis.call('HSET', KEYS[1], 'failures', failures, 'until', now + pause)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""


def bucket_key(email: str) -> str:
    """The account's bucket: a digest of the email in lower case (no address in Redis)."""
    return f"{PREFIX}:{hashlib.sha256(email.lower().encode()).hexdigest()[:32]}"


class LoginThrottle:
    """Refuses logins on an account during its back-off pause."""

    def __init__(self, client: AnyRedis | None, *, free_failures: int = 5,
                 base_seconds: float = 1.0, max_seconds: float = 900.0) -> None:
        self._client = client
        self._attempt = client.register_script(_ATTEMPT) if client is not None else None
        self._args = [free_failures, round(base_seconds * 1000), round(max_seconds * 1000),
                      round(max_seconds * 2000)]
        self._down = False

    async def attempt(self, email: str) -> None:
        """Counts an attempt on `email`; RESOURCE_EXHAUSTED while its pause lasts."""
        if self._attempt is None:
            return
        try:
            wait_ms = int(await self._attempt(keys=[bucket_key(email)], args=self._args))
        except FAILURES as error:
            self._unavailable(error)
            return
        self._down = False
        if wait_ms > 0:
            raise ResourceExhausted("too many failed logins for this account; retry later",
                                    reason="LOGIN_THROTTLED", retry_after=wait_ms / 1000)

    async def succeeded(self, email: str) -> None:
        """Clears the account's failures after a good password."""
        if self._client is None:
            return
        try:
            await self._client.delete(bucket_key(email))
        except FAILURES as error:
            self._unavailable(error)

    def _unavailable(self, error: BaseException) -> None:
        if not self._down:
            log.error("login throttle off: Redis unavailable", extra={"error": str(error)})
        self._down = True
