"""Rate limiting without Redis: bucket maths on a fake clock, client addresses behind proxies,
policy matching, and the middleware on a tiny app with per-process buckets."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.policies.ratelimit import (
    LocalTokenBucket,
    RateLimitMiddleware,
    RatePolicy,
    bucket_key,
    client_ip,
    parse_networks,
    standard_policies,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- LocalTokenBucket ---------------------------------------------------------------------


def test_local_bucket_gives_its_burst_then_refuses() -> None:
    bucket = LocalTokenBucket(clock=FakeClock())
    decisions = [bucket.take("k", rate=2.0, burst=3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 and d.backend == "local" for d in decisions)
    refused = decisions[-1]
    assert refused.retry_after == pytest.approx(0.5)  # one token at 2/s
    assert refused.reset == pytest.approx(1.5)  # three tokens at 2/s
    assert refused.retry_after_seconds == 1


def test_local_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(clock=clock)
    for _ in range(3):
        bucket.take("k", rate=2.0, burst=3)
    clock.now += 0.49
    assert not bucket.take("k", rate=2.0, burst=3).allowed
    clock.now += 0.01  # 0.5 s since empty: one token
    assert bucket.take("k", rate=2.0, burst=3).allowed
    assert not bucket.take("k", rate=2.0, burst=3).allowed
    clock.now += 3600  # a long idle time fills the bucket, no more
    allowed = [bucket.take("k", rate=2.0, burst=3).allowed for _ in range(5)]
    assert allowed == [True, True, True, False, False]


def test_local_buckets_are_per_key_and_bounded() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(max_keys=2, clock=clock)
    bucket.take("a", rate=1.0, burst=1)
    assert not bucket.take("a", rate=1.0, burst=1).allowed
    assert bucket.take("b", rate=1.0, burst=1).allowed
    bucket.take("c", rate=1.0, burst=1)  # evicts "a", the least recently used
    assert len(bucket) == 2
    assert bucket.take("a", rate=1.0, burst=1).allowed


def test_local_bucket_ignores_a_clock_that_steps_back() -> None:
    clock = FakeClock()
    bucket = LocalTokenBucket(clock=clock)
    bucket.take("k", rate=1.0, burst=1)
    clock.now -= 100
    assert not bucket.take("k", rate=1.0, burst=1).allowed


def test_decision_headers() -> None:
    bucket = LocalTokenBucket(clock=FakeClock())
    allowed = bucket.take("k", rate=0.2, burst=2)
    assert dict(allowed.headers()) == {
        b"ratelimit-limit": b"2", b"ratelimit-remaining": b"1", b"ratelimit-reset": b"5"}
    bucket.take("k", rate=0.2, burst=2)
    refused = bucket.take("k", rate=0.2, burst=2)
    assert dict(refused.headers())[b"retry-after"] == b"5"
    assert dict(refused.headers())[b"ratelimit-reset"] == b"10"


# --- client addresses ---------------------------------------------------------------------

TRUSTED = parse_networks(["10.0.0.0/8", "192.168.1.1", "fd00::/8"])


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    # An untrusted peer is the client, whatever it claims.
    ("203.0.113.9", None, "203.0.113.9"),
    ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
    ("203.0.113.9", "1.2.3.4, 10.0.0.1", "203.0.113.9"),
    # A trusted proxy: the rightmost address that is not a trusted proxy.
    ("10.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("10.0.0.1", "198.51.100.7, 10.2.3.4, 192.168.1.1", "198.51.100.7"),
    # What the client wrote left of the address the proxy saw is not believed.
    ("10.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
    ("10.0.0.1", "garbage, 198.51.100.7", "198.51.100.7"),
    # A trusted proxy without the header, or with garbage in the trusted chain: the peer.
    ("10.0.0.1", None, "10.0.0.1"),
    ("10.0.0.1", "not-an-ip", "10.0.0.1"),
    ("10.0.0.1", "198.51.100.7, ", "10.0.0.1"),
    ("10.0.0.1", "198.51.100.7, 999.1.1.1", "10.0.0.1"),
    ("10.0.0.1", "198.51.100.7:4711", "10.0.0.1"),
    # Only trusted proxies in the chain: the farthest one.
    ("10.0.0.1", "10.9.9.9, 10.0.0.2", "10.9.9.9"),
    # IPv6, and IPv4 seen through an IPv6 socket.
    ("fd00::1", "2001:db8::1", "2001:db8::1"),
    ("::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("::ffff:203.0.113.9", None, "203.0.113.9"),
    # A peer that is not an IP address (a unix socket, a test client).
    ("testclient", "1.2.3.4", "testclient"),
    (None, "1.2.3.4", "unknown"),
])
def test_client_ip(peer: str | None, forwarded: str | None, expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_no_trusted_proxies_means_the_header_is_ignored() -> None:
    assert client_ip("10.0.0.1", "198.51.100.7", ()) == "10.0.0.1"


def test_trusted_proxies_are_networks() -> None:
    assert parse_networks([" 10.1.2.3/8 "]) == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError):
        parse_networks(["not-a-network"])


# --- policies -----------------------------------------------------------------------------


def test_first_matching_policy_wins() -> None:
    login, default = standard_policies(rate=10, burst=20, login_rate=0.2, login_burst=5)
    assert login.matches("POST", "/auth/login") and login.matches("POST", "/auth/login/")
    assert not login.matches("GET", "/auth/login")
    assert not login.matches("POST", "/auth/login/x")
    assert not login.matches("POST", "/x/auth/login")
    assert default.matches("GET", "/products") and default.matches("POST", "/auth/login")


@pytest.mark.parametrize("kwargs", [
    {"name": "", "rate": 1, "burst": 1},
    {"name": "has space", "rate": 1, "burst": 1},
    {"name": "p", "rate": 0, "burst": 1},
    {"name": "p", "rate": 1, "burst": 0},
    {"name": "p", "rate": 1, "burst": 1.5},
    {"name": "p", "rate": 1, "burst": 1, "key": "cookie"},
    {"name": "p", "rate": 1, "burst": 1, "path_regex": "("},
])
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RatePolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_methods_are_case_insensitive() -> None:
    policy = RatePolicy(name="p", rate=1, burst=1, methods={"post"})
    assert policy.matches("POST", "/anything") and not policy.matches("GET", "/anything")


def test_middleware_refuses_bad_options() -> None:
    policy = RatePolicy(name="p", rate=1, burst=1)
    with pytest.raises(ValueError):
        RateLimitMiddleware(_app(), limiter=None, policies=[])
    with pytest.raises(ValueError):
        RateLimitMiddleware(_app(), limiter=None, policies=[policy, policy])
    with pytest.raises(ValueError):
        RateLimitMiddleware(_app(), limiter=None, policies=[policy], trusted_proxies=["x"])


def test_bucket_keys() -> None:
    assert bucket_key("login", "ip:1.2.3.4") == "portico:rl:login:ip:1.2.3.4"


# --- the middleware on a tiny app ---------------------------------------------------------


def _app() -> Starlette:
    async def hello(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("hello", headers={"x-app": "1"})

    return Starlette(routes=[Route(p, hello, methods=["GET", "POST"])
                             for p in ("/hello", "/auth/login", "/healthz", "/free")])


class PrincipalApp:
    """Sets a principal, as the authentication middleware before the limiter would."""

    def __init__(self, app, subject: str | None) -> None:  # type: ignore[no-untyped-def]
        self.app, self.subject = app, subject

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            scope.setdefault("state", {})["request_id"] = "rid-1"
            if self.subject:
                scope["state"]["principal"] = SimpleNamespace(subject=self.subject)
        await self.app(scope, receive, send)


def _client(app, peer: str = "203.0.113.9") -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


def _limited(*, trusted=(), subject=None, clock=None):  # type: ignore[no-untyped-def]
    policies = [RatePolicy(name="login", rate=1, burst=1, methods={"POST"},
                           path_regex=r"^/auth/login/?$"),
                RatePolicy(name="mine", rate=1, burst=2, path_regex=r"^/hello$",
                           key="principal")]
    local = LocalTokenBucket(clock=clock or FakeClock())
    middleware = RateLimitMiddleware(_app(), limiter=None, policies=policies,
                                     trusted_proxies=trusted, local=local)
    return PrincipalApp(middleware, subject)


async def test_headers_on_success_and_problem_on_refusal() -> None:
    async with _client(_limited()) as client:
        first = await client.get("/hello")
        second = await client.get("/hello")
        third = await client.get("/hello")
    assert first.status_code == 200 and first.headers["x-app"] == "1"
    assert first.headers["ratelimit-limit"] == "2"
    assert (first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]) == (
        "1", "0")
    assert first.headers["ratelimit-reset"] == "1" and "retry-after" not in first.headers
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert third.headers["retry-after"] == "1"
    assert third.headers["ratelimit-remaining"] == "0"
    body = third.json()
    assert (body["status"], body["code"], body["instance"], body["request_id"]) == (
        429, "RATE_LIMITED", "/hello", "rid-1")


async def test_login_has_its_own_bucket() -> None:
    async with _client(_limited()) as client:
        assert (await client.post("/auth/login")).status_code == 200
        assert (await client.post("/auth/login")).status_code == 429
        assert (await client.get("/hello")).status_code == 200


async def test_exempt_and_unmatched_paths_pass_untouched() -> None:
    async with _client(_limited()) as client:
        for _ in range(5):
            for path in ("/healthz", "/free"):
                response = await client.get(path)
                assert response.status_code == 200
                assert "ratelimit-limit" not in response.headers


async def test_principal_policy_buckets_per_subject() -> None:
    clock = FakeClock()
    shared = _limited(subject="alice", clock=clock)
    async with _client(shared, peer="1.1.1.1") as alice, \
            _client(shared, peer="2.2.2.2") as alice_elsewhere:
        assert (await alice.get("/hello")).status_code == 200
        assert (await alice_elsewhere.get("/hello")).status_code == 200
        assert (await alice.get("/hello")).status_code == 429
    anonymous = _limited(subject=None, clock=clock)
    async with _client(anonymous, peer="1.1.1.1") as one, \
            _client(anonymous, peer="2.2.2.2") as two:
        assert [(await one.get("/hello")).status_code for _ in range(3)] == [200, 200, 429]
        assert (await two.get("/hello")).status_code == 200


async def test_forwarded_for_is_believed_from_trusted_proxies_only() -> None:
    app = _limited(trusted=["10.0.0.0/8"])
    spoof = {"x-forwarded-for": "198.51.100.1"}
    async with _client(app, peer="203.0.113.9") as outsider, \
            _client(app, peer="10.0.0.5") as proxy:
        assert (await outsider.post("/auth/login", headers=spoof)).status_code == 200
        # Another claimed address from the same outsider is still the outsider's bucket.
        other = {"x-forwarded-for": "198.51.100.2"}
        assert (await outsider.post("/auth/login", headers=other)).status_code == 429
        # Through the proxy, 198.51.100.1 has a bucket of its own, still full.
        assert (await proxy.post("/auth/login", headers=spoof)).status_code == 200
        assert (await proxy.post("/auth/login", headers=spoof)).status_code == 429
        assert (await proxy.post("/auth/login", headers=other)).status_code == 200


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append(scope["type"])

    middleware = RateLimitMiddleware(app, limiter=None,
                                     policies=[RatePolicy(name="p", rate=1, burst=1)])
    for kind in ("lifespan", "websocket", "websocket"):
        await middleware({"type": kind, "path": "/hello"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket", "websocket"]
