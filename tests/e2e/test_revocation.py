"""Rights that end, through REST: the services refuse a logged-out token, a demoted admin's
token and a deleted user's token within a second (the edge forwards the token; the services
check it against revocations)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx

from tests.e2e.conftest import PASSWORD, Account, bearer, login


def refused_within(request: Callable[[], httpx.Response], seconds: float = 1.0) -> float:
    started = time.monotonic()
    while True:
        answer = request()
        took = time.monotonic() - started
        if answer.status_code == 401:
            assert took < seconds, f"refused only after {took:.2f}s"
            assert answer.headers["content-type"] == "application/problem+json"
            return took
        assert answer.status_code == 200, answer.text
        assert took < seconds, "still accepted after a second"
        time.sleep(0.02)


def test_logout_ends_the_token(api: httpx.Client, new_customer) -> None:
    customer = new_customer()
    other_session = login(api, customer.email, PASSWORD)
    assert api.get(f"/users/{customer.id}", headers=customer.headers).status_code == 200
    out = api.post("/auth/logout", headers=customer.headers)
    assert out.status_code == 204, out.text
    refused_within(lambda: api.get(f"/users/{customer.id}", headers=customer.headers))
    refused_within(lambda: api.get("/orders", headers=customer.headers))
    assert api.get("/orders", headers=bearer(other_session)).status_code == 200
    assert api.post("/auth/logout").status_code == 401   # nothing to end without a token


def test_a_demoted_admin_loses_admin_rights(api: httpx.Client, admin: Account) -> None:
    email = f"deputy-{uuid.uuid4().hex[:8]}@example.com"
    made = api.post("/users", json={"name": "Deputy", "email": email, "password": PASSWORD,
                                    "role": "admin"}, headers=admin.headers)
    assert made.status_code == 201, made.text
    deputy = bearer(login(api, email, PASSWORD))
    assert api.get("/users", headers=deputy).status_code == 200
    demoted = api.put(f"/users/{made.json()['id']}", json={
        "name": "Deputy", "email": email, "role": "customer"}, headers=admin.headers)
    assert demoted.status_code == 200 and demoted.json()["role"] == "customer", demoted.text
    refused_within(lambda: api.get("/users", headers=deputy))
    again = bearer(login(api, email, PASSWORD))
    assert api.get("/users", headers=again).status_code == 403


def test_a_deleted_users_token_lists_nothing(api: httpx.Client, new_customer) -> None:
    customer = new_customer()
    assert api.get("/orders", headers=customer.headers).status_code == 200
    assert api.delete(f"/users/{customer.id}", headers=customer.headers).status_code == 204
    refused_within(lambda: api.get("/orders", headers=customer.headers))


def test_a_password_change_needs_the_current_one_and_ends_the_old_tokens(
        api: httpx.Client, new_customer) -> None:
    customer = new_customer()
    path, headers = f"/users/{customer.id}", customer.headers
    body = {"name": "Test Customer", "email": customer.email, "password": "new-password-1"}
    assert api.put(path, json=body, headers=headers).status_code == 400
    assert api.put(path, json={**body, "current_password": "wrong"},
                   headers=headers).status_code == 403
    changed = api.put(path, json={**body, "current_password": PASSWORD}, headers=headers)
    assert changed.status_code == 200, changed.text
    refused_within(lambda: api.get(path, headers=headers))
    assert api.get(path, headers=bearer(login(api, customer.email, "new-password-1"))
                   ).status_code == 200
