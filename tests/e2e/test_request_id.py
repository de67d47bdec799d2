"""X-Request-ID: accepted or made, returned, forwarded as gRPC metadata, and present in the log
lines of the gateway and of every service the request touched."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from tests.e2e.conftest import Account


def lines_with(stack, request_id: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for log in stack.config.log_dir.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if request_id in line and line.startswith("{"):
                found.setdefault(log.stem.split("-")[0], []).append(json.loads(line))
    return found


def test_a_request_id_follows_an_order_through_every_service(
        stack, api: httpx.Client, new_customer, new_product) -> None:
    customer: Account = new_customer()
    product = new_product()
    request_id = f"trace-{uuid.uuid4().hex}"
    placed = api.post("/orders", headers={**customer.headers, "X-Request-ID": request_id},
                      json={"items": [{"product_id": product["id"], "quantity": 1}],
                            "payment": {"token": "tok_visa"}})
    assert placed.status_code == 201
    assert placed.headers["x-request-id"] == request_id
    deadline = time.monotonic() + 10
    while set(lines_with(stack, request_id)) < {"gateway", "order", "user", "product"}:
        assert time.monotonic() < deadline, lines_with(stack, request_id).keys()
        time.sleep(0.2)
    for service, entries in lines_with(stack, request_id).items():
        assert all(entry["request_id"] == request_id for entry in entries), service


def test_a_request_id_is_made_when_missing_or_malformed(api: httpx.Client) -> None:
    made = api.get("/healthz").headers["x-request-id"]
    assert len(made) == 32
    refused = api.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert refused.headers["x-request-id"] != "bad id with spaces"


def test_no_secret_reaches_a_log(stack, api: httpx.Client) -> None:
    secret = f"Secret-{uuid.uuid4().hex}"
    api.post("/users", json={"name": "Leak", "email": f"{uuid.uuid4().hex}@example.com",
                             "password": secret})
    api.post("/auth/login", json={"email": "nobody@example.com", "password": secret})
    for log in stack.config.log_dir.glob("*.log"):
        assert secret not in log.read_text(errors="replace"), log.name
