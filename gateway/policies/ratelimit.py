"""Rate limits at the edge: a token bucket per client and policy, shared by every gateway
replica in Redis (one atomic Lua script per request, ratelimit.lua), with the keys a later step
needs read in the same round trip.

Each route names its policy; the limiter keys the bucket by the client's address (or the signed-in
principal, for a policy that says so). While Redis is unreachable the limiter either decides on a
bucket of this process (fail-open, the default) or refuses (fail-closed): `take` then answers None.

On one Redis server the keys read along ride in the limiter's own script: one script, one round
trip per request. On a Redis Cluster a request's keys live in up to three slots (the client's
bucket, the page's entry and generation, the user's revocation keys), so they are grouped by
slot: the limiter's script takes those of the bucket's slot, a plain read script each other
slot's, and all of them are sent at once (each node's batcher puts them in its next pipeline),
so the request still waits for one round, that of the slowest node.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.metrics import RATE_LIMIT, child
from gateway.policies.buckets import Decision, LocalTokenBucket, ReadAlong
from gateway.policies.clientip import client_ip, client_key, parse_networks
from gateway.policies.redis import RedisLink

KEY_PREFIX = "portico:rl:"
LUA_SCRIPT = (Path(__file__).parent / "ratelimit.lua").read_text()
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# On a cluster, the keys read along that live in another slot than the bucket: the Redis time
# of their node (an entry's age is measured on the clock of the node that stores it), then
# their values.
READ_SCRIPT = """
local t = redis.call('TIME')
local reply = {t[1], t[2]}
for i = 1, #KEYS do
  reply[#reply + 1] = redis.call('GET', KEYS[i])
end
return reply
"""


def bucket_key(policy: str, client: str) -> str:
    """The Redis key of one client's bucket under one policy: the only place keys are made.
    Hash-tagged with the client (`portico:rl:default:{ip:203.0.113.9}`): a bucket is touched
    alone, so its tag only spreads the clients over a cluster's slots."""
    return f"{KEY_PREFIX}{policy}:{{{client}}}"


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """A bucket size: `rate` tokens a second, `burst` at most. `key` says whose bucket: the
    client's address, or the signed-in principal (anonymous requests fall back to the
    address)."""

    name: str
    rate: float
    burst: int
    key: Literal["ip", "principal"] = "ip"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"policy name {self.name!r}: 1-64 of letters, digits, _ . -")
        if not self.rate > 0:
            raise ValueError(f"policy {self.name}: rate must be positive")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"policy {self.name}: burst must be an integer >= 1")
        if self.key not in ("ip", "principal"):
            raise ValueError(f"policy {self.name}: key must be 'ip' or 'principal'")


def standard_policies(*, rate: float, burst: int, login_rate: float, login_burst: int,
                      signup_rate: float, signup_burst: int) -> dict[str, RatePolicy]:
    """The gateway's policies by name: one bucket per client for everything, and stricter
    ones for signing in (against password guessing) and signing up (each costs a hash)."""
    policies = (RatePolicy("default", rate, burst), RatePolicy("login", login_rate, login_burst),
                RatePolicy("signup", signup_rate, signup_burst))
    return {policy.name: policy for policy in policies}


class RateLimiter:
    """Takes a token from a request's bucket: in Redis through `link` (None: this process's
    buckets only), else, while Redis is down, from `local` when `fail_open`."""

    def __init__(self, link: RedisLink | None, policies: Mapping[str, RatePolicy], *,
                 trusted_proxies: Iterable[str] = (), fail_open: bool = True,
                 local: LocalTokenBucket | None = None) -> None:
        if "default" not in policies:
            raise ValueError("a 'default' rate policy is needed")
        self.policies = dict(policies)
        self._link = link
        self._script = link.script(LUA_SCRIPT) if link is not None else None
        self._read = link.script(READ_SCRIPT) if link is not None and link.cluster else None
        self._trusted = parse_networks(trusted_proxies)
        self._fail_open = fail_open
        self._local = local if local is not None else LocalTokenBucket()

    @property
    def retry_interval(self) -> float:
        return self._link.retry_interval if self._link is not None else 1.0

    def key(self, policy: RatePolicy, *, peer: str | None, forwarded_for: str | None,
            subject: str | None) -> str:
        """The bucket of a request: its principal's for a per-principal policy, else its
        client's address (from X-Forwarded-For only behind a trusted proxy)."""
        if policy.key == "principal" and subject:
            return bucket_key(policy.name, f"sub:{subject}")
        if self._trusted and forwarded_for:
            address = client_ip(peer, forwarded_for, self._trusted)
        else:  # nothing to believe in X-Forwarded-For: the peer it is
            address = peer or "unknown"
        return bucket_key(policy.name, "ip:" + client_key(address))

    async def take(self, policy: RatePolicy, key: str,
                   read_along: tuple[str, ...] = ()) -> Decision | None:
        """The decision for one request, the `read_along` keys read with it when Redis
        decided; None when Redis is down and the limiter fails closed."""
        decision = None
        if self._script is not None:
            if self._read is None:
                decision = await self._take_one(policy, key, read_along)
            else:
                decision = await self._take_per_slot(policy, key, read_along)
            if decision is None and not self._fail_open:
                child(RATE_LIMIT, policy.name, "deny", "unavailable").inc()
                return None
        if decision is None:
            decision = self._local.take(key, rate=policy.rate, burst=policy.burst)
        child(RATE_LIMIT, policy.name, "allow" if decision.allowed else "deny",
              decision.backend).inc()
        return decision


    async def _take_one(self, policy: RatePolicy, key: str,
                        read_along: tuple[str, ...]) -> Decision | None:
        """One server: the token and every key read along in one script."""
        reply = await self._link.run(self._script, [key, *read_along],
                                     [policy.rate, policy.burst], concern="ratelimit")
        if reply is None:
            return None
        reads = ReadAlong(tuple(reply[6:]), _seconds(reply[4], reply[5]), time.monotonic())
        return _from_reply(reply, policy, reads)

    async def _take_per_slot(self, policy: RatePolicy, key: str,
                             read_along: tuple[str, ...]) -> Decision | None:
        """A cluster: one script per slot, all sent at once. The reads are None when any
        slot's read failed (the later steps then read for themselves, or go without)."""
        groups: dict[int, list[int]] = {}
        for index, name in enumerate(read_along):
            groups.setdefault(self._link.slot(name), []).append(index)
        own = groups.pop(self._link.slot(key), [])
        others = list(groups.values())
        replies = await asyncio.gather(
            self._link.run(self._script, [key, *(read_along[i] for i in own)],
                           [policy.rate, policy.burst], concern="ratelimit"),
            *(self._link.run(self._read, [read_along[i] for i in group], [],
                             concern="ratelimit") for group in others))
        if replies[0] is None:
            return None
        values: list[bytes | None] = [None] * len(read_along)
        clocks = {-1: _seconds(replies[0][4], replies[0][5])}
        for group, reply in [(own, replies[0][4:]), *zip(others, replies[1:], strict=True)]:
            if reply is None:
                return _from_reply(replies[0], policy, None)
            for index, value in zip(group, reply[2:], strict=True):
                values[index] = value
                clocks[index] = _seconds(reply[0], reply[1])
        now = clocks.get(0, clocks[-1])  # the clock of the node of the first key (the entry)
        return _from_reply(replies[0], policy, ReadAlong(tuple(values), now, time.monotonic()))


def _seconds(seconds: bytes | int, micros: bytes | int) -> float:
    return int(seconds) + int(micros) / 1e6


def _from_reply(reply: list, policy: RatePolicy, reads: ReadAlong | None) -> Decision:
    allowed, remaining, reset, retry_after = reply[:4]
    return Decision(
        allowed=bool(allowed), limit=policy.burst, remaining=int(remaining),
        reset=float(reset), retry_after=float(retry_after), backend="redis", reads=reads)

