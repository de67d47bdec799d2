"""The real stack for end-to-end tests: two instances of each service as separate processes,
the gateway as its own process, real PostgreSQL, Redis and SecantusDB; all on free ports."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts.devstack.postgres import create_database, drop_database
from scripts.devstack.stack import Stack, StackConfig

ADMIN_EMAIL = "admin@portico.test"
ADMIN_PASSWORD = "admin-password-1"
PASSWORD = "customer-password-1"

# Generous limits: these tests are about behaviour, not about being limited.
TEST_SETTINGS = {
    "PORTICO_ADMIN_EMAIL": ADMIN_EMAIL,
    "PORTICO_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "PORTICO_RATE_LIMIT_RATE": "2000",
    "PORTICO_RATE_LIMIT_BURST": "5000",
    "PORTICO_LOGIN_RATE_LIMIT_RATE": "100",
    "PORTICO_LOGIN_RATE_LIMIT_BURST": "500",
    "PORTICO_SIGNUP_RATE_LIMIT_RATE": "100",
    "PORTICO_SIGNUP_RATE_LIMIT_BURST": "500",
    "PORTICO_HEALTH_CHECK_INTERVAL_SECONDS": "0.2",
    "PORTICO_BREAKER_FAILURE_THRESHOLD": "3",
    "PORTICO_BREAKER_RESET_TIMEOUT_SECONDS": "1",
    "PORTICO_GRACE_PERIOD_SECONDS": "2",
    "PORTICO_ACCESS_LOG": "true",
}


def start_stack(tmp: Path, *, pg_url: str, redis_url: str, mongo_uri: str,
                env: dict[str, str] | None = None, instances: int = 2,
                gateway_workers: int = 1) -> tuple[Stack, str]:
    """A stack on fresh databases of its own; returns it and its PostgreSQL database name."""
    name = f"e2e_{uuid.uuid4().hex[:10]}"
    database_url = create_database(pg_url, name)
    config = StackConfig(
        state_dir=tmp / "state", gateway_port=0, instances=instances,
        gateway_workers=gateway_workers,
        base_ports={"user": 0, "product": 0, "order": 0},
        database_url=database_url, redis_url=redis_url, mongodb_uri=mongo_uri,
        env={**TEST_SETTINGS, "PORTICO_MONGODB_DATABASE": name, **(env or {})},
        log_dir=tmp / "logs")
    try:
        return Stack(config).start(), name
    except BaseException:
        drop_database(pg_url, name)
        raise


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_url: str, redis_url: str,
          mongo_uri: str) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    running, name = start_stack(tmp, pg_url=pg_url, redis_url=redis_db(redis_url, 1),
                                mongo_uri=mongo_uri)
    yield running
    running.stop()
    drop_database(pg_url, name)


def redis_db(redis_url: str, index: int) -> str:
    """The same Redis server, another logical database: a stack's buckets and cache entries
    stay apart from another's."""
    base, _, last = redis_url.rstrip("/").rpartition("/")
    return f"{base}/{index}" if last.isdigit() else f"{redis_url.rstrip('/')}/{index}"


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30, verify=False) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(api: httpx.Client, email: str, password: str) -> str:
    answer = api.post("/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


_counter = itertools.count()


@pytest.fixture(scope="session")
def admin(api: httpx.Client) -> Account:
    token = login(api, ADMIN_EMAIL, ADMIN_PASSWORD)
    me = api.get("/users", headers=bearer(token), params={"limit": 100})
    assert me.status_code == 200, me.text
    user = next(u for u in me.json() if u["email"] == ADMIN_EMAIL)
    return Account(user["id"], ADMIN_EMAIL, token)


@pytest.fixture(scope="session")
def new_customer(api: httpx.Client) -> Callable[[], Account]:
    """Signs up a new customer and logs in."""

    def make() -> Account:
        email = f"customer{next(_counter)}-{uuid.uuid4().hex[:6]}@example.com"
        created = api.post("/users", json={"name": "Test Customer", "email": email,
                                           "password": PASSWORD})
        assert created.status_code == 201, created.text
        return Account(created.json()["id"], email, login(api, email, PASSWORD))

    return make


@pytest.fixture(scope="session")
def new_product(api: httpx.Client, admin: Account) -> Callable[..., dict]:
    """Creates a product as the admin."""

    def make(*, price: str = "10.00", stock: int = 10, name: str | None = None) -> dict:
        body = {"name": name or f"Product {uuid.uuid4().hex[:6]}", "price": price,
                "stock": stock}
        created = api.post("/products", json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
        return created.json()

    return make
