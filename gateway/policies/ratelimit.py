"""Rate limiting at the edge: token buckets per client (IP, or principal) and policy.

Buckets live in Redis so every replica shares them (see ratelimit_buckets.py). While Redis is
unreachable the middleware either serves requests limited by a bucket of this process
(fail-open, the default) or refuses them with 503 (fail-closed).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import Problem, send_problem
from gateway.metrics import RATE_LIMIT, child
from gateway.policies.buckets import (
    Decision,
    LocalTokenBucket,
    RedisTokenBucket,
    bucket_key,
)
from gateway.policies.readalong import STATE_KEY, Planner

__all__ = [
    "Decision",
    "LocalTokenBucket",
    "RateLimitMiddleware",
    "RatePolicy",
    "RedisTokenBucket",
    "bucket_key",
    "client_ip",
    "parse_networks",
    "standard_policies",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EXEMPT_PATHS = ("/healthz", "/readyz", "/metrics")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """Which requests share a bucket, and its size: `rate` tokens a second, `burst` at most.

    `methods` None means any method, `path_regex` None any path. `key` says whose bucket:
    the client IP, or the authenticated principal (anonymous requests fall back to the IP).
    """

    name: str
    rate: float
    burst: int
    methods: frozenset[str] | None = None
    path_regex: str | None = None
    key: Literal["ip", "principal"] = "ip"
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"policy name {self.name!r}: 1-64 of letters, digits, _ . -")
        if not self.rate > 0:
            raise ValueError(f"policy {self.name}: rate must be positive")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"policy {self.name}: burst must be an integer >= 1")
        if self.key not in ("ip", "principal"):
            raise ValueError(f"policy {self.name}: key must be 'ip' or 'principal'")
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))
        try:
            pattern = re.compile(self.path_regex) if self.path_regex is not None else None
        except re.error as error:
            raise ValueError(f"policy {self.name}: path_regex: {error}") from None
        object.__setattr__(self, "_pattern", pattern)

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self._pattern is None or self._pattern.search(path) is not None


def standard_policies(*, rate: float, burst: int, login_rate: float,
                      login_burst: int) -> list[RatePolicy]:
    """The gateway's policies: a strict bucket for sign-in (against password guessing), then
    one bucket per client IP for everything else."""
    return [
        RatePolicy(name="login", rate=login_rate, burst=login_burst,
                   methods=frozenset({"POST"}), path_regex=r"^/auth/login/?$"),
        RatePolicy(name="default", rate=rate, burst=burst),
    ]


def parse_networks(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Trusted proxies as networks ("10.0.0.0/8", or a single address)."""
    return tuple(ipaddress.ip_network(network.strip(), strict=False) for network in networks)


def client_ip(peer: str | None, forwarded_for: str | None,
              trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the direct peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each proxy appends the
    address it saw) and the first address that is not a trusted proxy is the client. Entries
    further left were written by the client itself and are never believed. An unreadable
    entry within the trusted chain means the chain cannot be trusted: the peer is used.
    """
    peer_address = _address(peer)
    if peer_address is None:
        return peer or "unknown"
    if not forwarded_for or not _inside(peer_address, trusted):
        return str(peer_address)
    hop = peer_address
    for entry in reversed(forwarded_for.split(",")):
        address = _address(entry.strip())
        if address is None:
            return str(peer_address)
        hop = address
        if not _inside(hop, trusted):
            return str(hop)
    # Every hop is a trusted proxy: the farthest one is where the request came from.
    return str(hop)


def _address(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inside(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


class RateLimitMiddleware:
    """Takes a token from the request's bucket before the app sees the request.

    Refused requests get 429 problem+json with Retry-After; every limited response carries
    RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset. The first policy that matches a
    request decides its bucket; a request no policy matches, or to an exempt path, passes
    untouched. `limiter` None limits with the per-process buckets only.
    """

    def __init__(self, app: ASGIApp, *, limiter: RedisTokenBucket | None,
                 policies: Sequence[RatePolicy], trusted_proxies: Iterable[str] = (),
                 fail_open: bool = True, exempt_paths: Iterable[str] = EXEMPT_PATHS,
                 local: LocalTokenBucket | None = None,
                 read_along: Planner | None = None) -> None:
        names = [policy.name for policy in policies]
        if not names:
            raise ValueError("at least one rate policy is needed")
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique: {names}")
        self.app = app
        self.limiter = limiter
        self.policies = tuple(policies)
        self.trusted = parse_networks(trusted_proxies)
        self.fail_open = fail_open
        self.exempt = frozenset(exempt_paths)
        self.local = local if local is not None else LocalTokenBucket()
        self.read_along = read_along

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        policy = self._policy(scope["method"], scope["path"])
        if policy is None:
            await self.app(scope, receive, send)
            return
        reads = self.read_along(scope) if self.read_along is not None else None
        decision = await self._take(policy, bucket_key(policy.name, self._client(scope, policy)),
                                    reads or ())
        request_id = scope.get("state", {}).get("request_id", "-")
        if decision is None:
            RATE_LIMIT.labels(bucket=policy.name, decision="deny", backend="unavailable").inc()
            await send_problem(send, self._unavailable(), instance=scope["path"],
                               request_id=request_id)
            return
        child(RATE_LIMIT, policy.name, "allow" if decision.allowed else "deny",
              decision.backend).inc()
        if not decision.allowed:
            await send_problem(send, _refused(decision), instance=scope["path"],
                               request_id=request_id)
            return
        if decision.reads is not None:
            scope.setdefault("state", {})[STATE_KEY] = decision.reads
        await self.app(scope, receive, _with_headers(send, decision.headers()))

    def _policy(self, method: str, path: str) -> RatePolicy | None:
        return next((p for p in self.policies if p.matches(method, path)), None)

    def _client(self, scope: Scope, policy: RatePolicy) -> str:
        if policy.key == "principal":
            subject = getattr(scope.get("state", {}).get("principal"), "subject", None)
            if subject:
                return f"sub:{subject}"
        peer = scope["client"][0] if scope.get("client") else None
        if not self.trusted:  # nothing to believe in X-Forwarded-For: the peer it is
            return f"ip:{peer or 'unknown'}"
        return "ip:" + client_ip(peer, _forwarded_for(scope), self.trusted)

    async def _take(self, policy: RatePolicy, key: str,
                    reads: tuple[str, ...]) -> Decision | None:
        if self.limiter is not None:
            decision = await self.limiter.take(key, rate=policy.rate, burst=policy.burst,
                                               read_along=reads)
            if decision is not None:
                return decision
            if not self.fail_open:
                return None
        return self.local.take(key, rate=policy.rate, burst=policy.burst)

    def _unavailable(self) -> Problem:
        retry = self.limiter.retry_interval if self.limiter is not None else 1
        return Problem(503, "rate limiting is unavailable; try again shortly",
                       code="RATE_LIMIT_UNAVAILABLE",
                       headers={"Retry-After": str(max(1, math.ceil(retry)))})


def _refused(decision: Decision) -> Problem:
    seconds = decision.retry_after_seconds
    return Problem(429, f"rate limit exceeded; try again in {seconds} s", code="RATE_LIMITED",
                   headers={name.decode(): value.decode() for name, value in decision.headers()})


def _forwarded_for(scope: Scope) -> str | None:
    # Several X-Forwarded-For headers are one list, in order (RFC 9110, section 5.3).
    values = [value.decode("latin-1") for name, value in scope["headers"]
              if name == b"x-forwarded-for"]
    return ",".join(values) if values else None


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return send_with_headers
