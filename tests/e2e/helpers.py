"""Helpers of the end-to-end tests: metrics, private stacks, polling, products."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scripts.devstack.postgres import drop_database
from scripts.devstack.stack import Stack
from tests.e2e.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Account, login, start_stack

NO_CACHE = {"Cache-Control": "no-cache"}


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """The sum of the gateway's samples called `name` whose labels include `labels`."""
    text = client.get("/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def upstream_calls(client: httpx.Client, service: str, **labels: str) -> float:
    return metric(client, "portico_upstream_calls_total", service=service, **labels)


def private_stack(tmp: Path, *, pg_url: str, redis_url: str, mongo_uri: str,
                  env: dict[str, str]) -> Iterator[tuple[Stack, httpx.Client, Account]]:
    """A stack of the module's own (for tests that kill things or need other settings), a
    client of its gateway and its admin; stopped and its database dropped afterwards."""
    stack, name = start_stack(tmp, pg_url=pg_url, redis_url=redis_url, mongo_uri=mongo_uri,
                              env=env)
    try:
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
            token = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
            yield stack, client, Account("admin", ADMIN_EMAIL, token)
    finally:
        stack.stop()
        drop_database(pg_url, name)


def instance_state(client: httpx.Client, admin: Account, service: str,
                   address: str) -> dict:
    answer = client.get("/admin/upstreams", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    return next(i for i in answer.json()[service] if i["address"] == address)


def wait_for(condition: Callable[[], bool], what: str, *, attempts: int = 300,
             pause: float = 0.1) -> None:
    """Polls `condition` (bounded); fails with `what` when it never holds."""
    for _ in range(attempts):
        if condition():
            return
        time.sleep(pause)
    raise AssertionError(f"gave up waiting for {what}")


def create_product(client: httpx.Client, admin: Account, **fields) -> dict:
    body = {"name": f"Edge {uuid.uuid4().hex[:8]}", "price": "10.00", "stock": 10, **fields}
    created = client.post("/products", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    return created.json()
