"""Rate limiting without Redis: bucket maths on a fake clock, client addresses behind proxies
(IPv6 by /64), policies, and the limiter's keys and decisions on per-process buckets."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.policies.buckets import LocalTokenBucket
from gateway.policies.clientip import client_ip, client_key, parse_networks
from gateway.policies.ratelimit import RateLimiter, RatePolicy, bucket_key, standard_policies


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


def test_a_long_forwarded_chain_is_read_from_the_right_only() -> None:
    chain = ", ".join(["10.1.1.1"] * 100_000 + ["198.51.100.7"] + ["10.0.0.2"] * 3)
    assert client_ip("10.0.0.1", chain, TRUSTED) == "198.51.100.7"
    assert client_ip("10.0.0.1", "1.2.3.4, " + "x" * 65_536, TRUSTED) == "10.0.0.1"


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
    ("testclient", "testclient"),
])
def test_ipv6_clients_share_the_bucket_of_their_64(address: str, key: str) -> None:
    assert client_key(address) == key


def test_trusted_proxies_are_networks() -> None:
    assert parse_networks([" 10.1.2.3/8 "]) == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError):
        parse_networks(["not-a-network"])


# --- policies and the limiter -------------------------------------------------------------


def test_standard_policies_by_name() -> None:
    policies = standard_policies(rate=10, burst=20, login_rate=0.2, login_burst=5,
                                 signup_rate=0.1, signup_burst=3)
    assert {name: (p.rate, p.burst) for name, p in policies.items()} == {
        "default": (10, 20), "login": (0.2, 5), "signup": (0.1, 3)}


@pytest.mark.parametrize("kwargs", [
    {"name": "", "rate": 1, "burst": 1},
    {"name": "has space", "rate": 1, "burst": 1},
    {"name": "p", "rate": 0, "burst": 1},
    {"name": "p", "rate": 1, "burst": 0},
    {"name": "p", "rate": 1, "burst": 1.5},
    {"name": "p", "rate": 1, "burst": 1, "key": "cookie"},
])
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RatePolicy(**kwargs)  # type: ignore[arg-type]


def test_the_limiter_refuses_bad_options() -> None:
    with pytest.raises(ValueError):
        RateLimiter(None, {"login": RatePolicy("login", 1, 1)})
    with pytest.raises(ValueError):
        RateLimiter(None, {"default": RatePolicy("default", 1, 1)}, trusted_proxies=["x"])


def test_bucket_keys() -> None:
    assert bucket_key("login", "ip:1.2.3.4") == "portico:rl:login:{ip:1.2.3.4}"


DEFAULT = RatePolicy("default", rate=1, burst=2)
MINE = RatePolicy("mine", rate=1, burst=2, key="principal")


def _limiter(trusted=()) -> RateLimiter:  # type: ignore[no-untyped-def]
    return RateLimiter(None, {"default": DEFAULT, "mine": MINE}, trusted_proxies=trusted,
                       local=LocalTokenBucket(clock=FakeClock()))


def test_keys_by_address_principal_and_trusted_proxy() -> None:
    limiter = _limiter(trusted=["10.0.0.0/8"])
    key = limiter.key
    assert key(DEFAULT, peer="203.0.113.9", forwarded_for=None, subject="alice") == \
        "portico:rl:default:{ip:203.0.113.9}"
    assert key(MINE, peer="203.0.113.9", forwarded_for=None, subject="alice") == \
        "portico:rl:mine:{sub:alice}"
    assert key(MINE, peer="203.0.113.9", forwarded_for=None, subject=None) == \
        "portico:rl:mine:{ip:203.0.113.9}"
    # A claimed address counts only from a trusted proxy.
    assert key(DEFAULT, peer="203.0.113.9", forwarded_for="198.51.100.1", subject=None) == \
        "portico:rl:default:{ip:203.0.113.9}"
    assert key(DEFAULT, peer="10.0.0.5", forwarded_for="198.51.100.1", subject=None) == \
        "portico:rl:default:{ip:198.51.100.1}"
    assert key(DEFAULT, peer="2001:db8::1", forwarded_for=None, subject=None) == \
        "portico:rl:default:{ip:2001:db8::/64}"
    assert _limiter().key(DEFAULT, peer="10.0.0.5", forwarded_for="198.51.100.1",
                          subject=None) == "portico:rl:default:{ip:10.0.0.5}"


async def test_without_redis_the_local_buckets_decide() -> None:
    limiter = _limiter()
    decisions = [await limiter.take(DEFAULT, "k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert {d.backend for d in decisions} == {"local"}
    assert decisions[0].reads is None
