"""What the tests ask of the deployment over HTTP, as coroutines for the client loop (so from
the client namespace): readiness, the gateways' metrics, and the data every test uses (an
admin, customers, products), made through the load balancer as a user would."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from tests.multihost.client import http
from tests.multihost.topology import CLIENT_SOURCES

# Source addresses: the first few make the data (sign-ups and logins have small buckets per
# client), the rest are handed out to the tests' loads.
SEED_SOURCES = CLIENT_SOURCES[:4]
LOAD_SOURCES = CLIENT_SOURCES[4:]
PASSWORD = "multihost-customer-1"


async def samples(url: str, name: str, source: str) -> list[tuple[dict[str, str], float]]:
    """The samples called `name` in a gateway's /metrics, with their labels."""
    async with http(url, source, timeout=5) as client:
        text = (await client.get("/metrics")).text
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


async def total(url: str, name: str, source: str, **labels: str) -> float:
    return sum(value for found, value in await samples(url, name, source)
               if labels.items() <= found.items())


async def healthy_instances(url: str, source: str) -> set[str]:
    return {labels["instance"] for labels, value in
            await samples(url, "portico_upstream_healthy", source) if value == 1}


async def wait_ready(gateways: list[str], instances: set[str], source: str,
                     timeout: float = 90) -> float:
    """Until every gateway's /readyz is 200 and it sees every one of `instances` healthy;
    the seconds it took."""
    started = time.monotonic()
    pending = list(gateways)
    while pending:
        url = pending[0]
        try:
            async with http(url, source, timeout=2) as client:
                ready = (await client.get("/readyz")).status_code == 200
            if ready and instances <= await healthy_instances(url, source):
                pending.pop(0)
                continue
        except Exception:   # not listening yet
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"gateways not ready within {timeout:g}s: {pending}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


@dataclass
class Account:
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Seeded:
    admin: Account
    customers: list[Account]
    products: list[str]


async def login(client, email: str, password: str) -> str:
    answer = await client.post("/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


async def seed(lb_url: str, admin_email: str, admin_password: str, *, customers: int = 4,
               products: int = 24) -> Seeded:
    """An admin's token, `customers` signed-up customers and `products` products with stock
    for every order the tests place."""
    async with http(lb_url, SEED_SOURCES[0]) as client:
        admin = Account("admin", await login(client, admin_email, admin_password))
        made = []
        for index in range(products):
            answer = await client.post("/products", headers=admin.headers, json={
                "name": f"Multihost {index}", "price": "1.00", "stock": 1_000_000})
            assert answer.status_code == 201, answer.text
            made.append(answer.json()["id"])
    accounts = []
    for index in range(customers):
        # Each sign-up and login from an address of its own: those buckets are small.
        source = SEED_SOURCES[1 + index % (len(SEED_SOURCES) - 1)]
        async with http(lb_url, source) as client:
            email = f"customer{index}-{uuid.uuid4().hex[:6]}@portico.test"
            created = await client.post("/users", json={
                "name": f"Customer {index}", "email": email, "password": PASSWORD})
            assert created.status_code == 201, created.text
            accounts.append(Account(created.json()["id"], await login(client, email, PASSWORD)))
    return Seeded(admin, accounts, made)
