"""Rate limiting through the real stack, on a private one with small buckets and a Redis of its
own that the tests stop and start again. Each test sends from its own loopback address
(127.0.0.x), so each has buckets of its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from scripts.devstack.redis_server import RedisServer
from scripts.devstack.stack import Stack
from tests.e2e.conftest import ADMIN_EMAIL
from tests.e2e.helpers import create_product, metric, private_stack, wait_for

# Slow refills: what a test sees does not depend on how fast the machine sends.
RATE, BURST, LOGIN_RATE, LOGIN_BURST = 1, 20, 0.1, 3
TRUSTED_PROXY = "127.0.0.9"
SETTINGS = {
    "PORTICO_RATE_LIMIT_RATE": str(RATE),
    "PORTICO_RATE_LIMIT_BURST": str(BURST),
    "PORTICO_LOGIN_RATE_LIMIT_RATE": str(LOGIN_RATE),
    "PORTICO_LOGIN_RATE_LIMIT_BURST": str(LOGIN_BURST),
    "PORTICO_TRUSTED_PROXIES": TRUSTED_PROXY,
}


@pytest.fixture(scope="module")
def redis(tmp_path_factory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("ratelimit-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def edge(tmp_path_factory, pg_url, mongo_uri, redis):
    yield from private_stack(tmp_path_factory.mktemp("ratelimit"), pg_url=pg_url,
                             redis_url=redis.url, mongo_uri=mongo_uri, env=SETTINGS)


@pytest.fixture(scope="module")
def product(edge) -> dict:
    _, client, admin = edge
    return create_product(client, admin)


def client_from(stack: Stack, address: str) -> httpx.Client:
    """A client whose requests come from `address` (any 127.x.y.z reaches the gateway)."""
    return httpx.Client(base_url=stack.gateway_url, timeout=30,
                        transport=httpx.HTTPTransport(local_address=address))


def until_refused(client: httpx.Client, path: str, *, limit: int = 200,
                  **kwargs) -> list[httpx.Response]:
    """GETs `path` until one is refused (at most `limit` of them)."""
    answers = []
    for _ in range(limit):
        answers.append(client.get(path, **kwargs))
        if answers[-1].status_code == 429:
            return answers
    counts = Counter(a.status_code for a in answers)
    raise AssertionError(f"{limit} requests and none refused: {counts}")


def assert_refused(answer: httpx.Response, limit: int) -> None:
    assert answer.status_code == 429
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "RATE_LIMITED"
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["RateLimit-Limit"] == str(limit)
    assert answer.headers["RateLimit-Remaining"] == "0"


def test_every_answer_carries_ratelimit_headers(edge, product) -> None:
    stack, _, _ = edge
    path = f"/products/{product['id']}"
    with client_from(stack, "127.0.0.10") as client:
        etag = client.get(path).headers["ETag"]
        answers = {
            "miss or hit": client.get(path),
            "not modified": client.get(path, headers={"If-None-Match": etag}),
            "not found": client.get("/products/no-such-product"),
            "no such route": client.get("/no/such/route"),
            "anonymous write": client.post("/products", json={"name": "x", "price": "1.00"}),
            "bad token": client.get("/users", headers={"Authorization": "Bearer nonsense"}),
            "body too large": client.post("/products", content=b"[" * 70_000,
                                          headers={"Content-Type": "application/json"}),
            "not json": client.post("/products", content=b"x=1",
                                    headers={"Content-Type": "text/plain"}),
            "unknown query": client.get("/products?junk=1"),
            # Cut short by the server's protocol, answered by the pipeline.
            "headers too large": client.get(path, headers={"X-Big": "b" * 20_000}),
            "target too long": client.get("/products/" + "t" * 9_000),
        }
    statuses = {what: answer.status_code for what, answer in answers.items()}
    assert statuses == {"miss or hit": 200, "not modified": 304, "not found": 404,
                        "no such route": 404, "anonymous write": 401, "bad token": 401,
                        "body too large": 413, "not json": 415, "unknown query": 400,
                        "headers too large": 431, "target too long": 414}
    assert answers["bad token"].headers["WWW-Authenticate"].startswith("Bearer")
    missing = [what for what, answer in answers.items()
               if not all(name in answer.headers for name in
                          ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))]
    assert missing == []
    assert {answer.headers["RateLimit-Limit"] for answer in answers.values()} == {str(BURST)}
    remaining = [int(answer.headers["RateLimit-Remaining"]) for answer in answers.values()]
    assert all(0 <= left < BURST for left in remaining) and remaining[-1] < remaining[0]


def test_bad_tokens_are_limited_too(edge) -> None:
    stack, _, _ = edge
    with client_from(stack, "127.0.0.18") as client:
        answers = until_refused(client, "/users", limit=BURST + 20,
                                headers={"Authorization": "Bearer guessed.token.value"})
    assert {a.status_code for a in answers[:-1]} == {401}
    assert_refused(answers[-1], BURST)


def test_past_the_burst_the_answer_is_429(edge, product) -> None:
    stack, metrics_client, _ = edge
    denied = metric(metrics_client, "portico_rate_limit_decisions_total", bucket="default",
                    decision="deny", backend="redis")
    with client_from(stack, "127.0.0.11") as client:
        answers = until_refused(client, f"/products/{product['id']}")
    assert BURST <= len(answers) - 1
    assert {a.status_code for a in answers[:-1]} == {200}
    assert_refused(answers[-1], BURST)
    assert metric(metrics_client, "portico_rate_limit_decisions_total", bucket="default",
                  decision="deny", backend="redis") == denied + 1


def test_the_login_bucket_is_stricter_than_the_default(edge, product) -> None:
    stack, _, _ = edge
    with client_from(stack, "127.0.0.12") as client:
        tries = []
        for _ in range(LOGIN_BURST + 5):
            tries.append(client.post("/auth/login", json={"email": ADMIN_EMAIL,
                                                          "password": "wrong-password-1"}))
            if tries[-1].status_code == 429:
                break
        assert [t.status_code for t in tries[:-1]] == [401] * (len(tries) - 1)
        # The bucket starts with LOGIN_BURST tokens; at most one more can trickle in.
        assert LOGIN_BURST <= len(tries) - 1 <= LOGIN_BURST + 1
        assert_refused(tries[-1], LOGIN_BURST)
        # The right password waits as well: the bucket is the address's, not the outcome's.
        right = client.post("/auth/login", json={"email": ADMIN_EMAIL,
                                                 "password": "admin-password-1"})
        assert right.status_code == 429
        # Everything else from that address has its own, larger bucket.
        other = client.get(f"/products/{product['id']}")
    assert other.status_code == 200
    assert other.headers["RateLimit-Limit"] == str(BURST)
    assert other.headers["RateLimit-Remaining"] == str(BURST - 1)


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(edge, product) -> None:
    stack, _, _ = edge
    path = f"/products/{product['id']}"
    with client_from(stack, "127.0.0.13") as client:
        until_refused(client, path)
        spoofed = [client.get(path, headers={"X-Forwarded-For": f"203.0.113.{i}"})
                   for i in range(1, 6)]
    # The address's own, empty bucket (a believed header would start a full one).
    assert [a.headers["RateLimit-Remaining"] for a in spoofed] == ["0"] * 5
    assert spoofed[0].status_code == 429
    with client_from(stack, TRUSTED_PROXY) as proxy:
        until_refused(proxy, path, headers={"X-Forwarded-For": "198.51.100.1"})
        another = proxy.get(path, headers={"X-Forwarded-For": "198.51.100.2"})
        # A client's own entries left of the proxy's are not believed.
        forged = proxy.get(path, headers={"X-Forwarded-For": "198.51.100.3, 198.51.100.1"})
    assert another.status_code == 200
    assert another.headers["RateLimit-Remaining"] == str(BURST - 1)
    assert forged.headers["RateLimit-Remaining"] == "0"


def test_a_redis_outage_keeps_serving_limited_locally_then_shared_limiting_resumes(
        edge, product, redis: RedisServer) -> None:
    stack, metrics_client, admin = edge
    path = f"/products/{product['id']}"
    with client_from(stack, "127.0.0.14") as client:
        client.get(path)
        assert client.get(path).headers["X-Cache"] == "HIT"
    local = metric(metrics_client, "portico_rate_limit_decisions_total", backend="local")
    bypassed = metric(metrics_client, "portico_cache_lookups_total", outcome="bypass")
    redis.stop()
    try:
        with client_from(stack, "127.0.0.15") as client:
            answers = until_refused(client, path)
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) == {200, 429} and statuses[200] >= BURST
        assert not any("X-Cache" in a.headers for a in answers)
        assert_refused(answers[-1], BURST)
        # An admin's rights cannot be checked against revocations meanwhile: admin-only writes
        # are refused (a demoted admin never keeps its rights), with a retry hint.
        refused = metrics_client.put(path, json={"price": "7.77"}, headers=admin.headers)
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "REVOCATION_UNVERIFIED"
        assert int(refused.headers["Retry-After"]) >= 1
        with client_from(stack, "127.0.0.16") as client:
            read = client.get(path)
        assert read.status_code == 200 and read.json()["price"] == product["price"]
        assert "X-Cache" not in read.headers
        assert metric(metrics_client, "portico_rate_limit_decisions_total",
                      backend="local") > local
        assert metric(metrics_client, "portico_cache_lookups_total",
                      outcome="bypass") > bypassed
        assert metric(metrics_client, "portico_redis_errors_total") > 0
    finally:
        redis.start()

    # Redis back: the write goes through, and the cache shows it.
    def written() -> bool:
        answer = metrics_client.put(path, json={"price": "7.77"}, headers=admin.headers)
        assert answer.status_code in (200, 503), answer.text
        return answer.status_code == 200

    wait_for(written, "admin writes to be accepted again", attempts=100)
    shared = metric(metrics_client, "portico_rate_limit_decisions_total", backend="redis")
    with client_from(stack, "127.0.0.17") as client:
        def cached_again() -> bool:
            answer = client.get(path)
            assert answer.status_code == 200
            return answer.headers.get("X-Cache") == "HIT"

        wait_for(cached_again, "the cache to be used again", attempts=100)
        assert client.get(path).json()["price"] == "7.77"
        answers = until_refused(client, path)
    assert metric(metrics_client, "portico_rate_limit_decisions_total", backend="redis",
                  decision="deny") >= 1
    assert metric(metrics_client, "portico_rate_limit_decisions_total",
                  backend="redis") > shared
    assert_refused(answers[-1], BURST)
