"""The access matrix of the README's REST table: anonymous, a customer, another customer and an
admin, on every route. Users acting on other users get 403 (decided without a lookup, so it
reveals nothing); other customers' orders answer 404, as if they did not exist."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, Account

ANON: dict[str, str] = {}


@pytest.fixture(scope="module")
def people(new_customer, admin):
    return {"alice": new_customer(), "bob": new_customer(), "admin": admin}


def _headers(who: str, people) -> dict[str, str]:
    return ANON if who == "anon" else people[who].headers


@pytest.mark.parametrize("who, status", [("anon", 401), ("alice", 200), ("bob", 403),
                                         ("admin", 200)])
def test_read_a_user(api: httpx.Client, people, who, status) -> None:
    answer = api.get(f"/users/{people['alice'].id}", headers=_headers(who, people))
    assert answer.status_code == status
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("who, status", [("anon", 401), ("alice", 200), ("bob", 403),
                                         ("admin", 200)])
def test_update_a_user(api: httpx.Client, people, who, status) -> None:
    body = {"name": f"Alice by {who}", "email": people["alice"].email}
    answer = api.put(f"/users/{people['alice'].id}", json=body, headers=_headers(who, people))
    assert answer.status_code == status


@pytest.mark.parametrize("who, status", [("anon", 401), ("bob", 403), ("alice", 204)])
def test_delete_a_user(api: httpx.Client, new_customer, people, who, status) -> None:
    victim: Account = new_customer()
    headers = victim.headers if who == "alice" else _headers(who, people)
    answer = api.delete(f"/users/{victim.id}", headers=headers)
    assert answer.status_code == status
    if status == 204:
        assert api.get(f"/users/{victim.id}", headers=people["admin"].headers).status_code == 404


def test_admin_deletes_any_user(api: httpx.Client, new_customer, people) -> None:
    victim = new_customer()
    assert api.delete(f"/users/{victim.id}", headers=people["admin"].headers).status_code == 204


@pytest.mark.parametrize("who, status", [("anon", 401), ("alice", 403), ("admin", 200)])
def test_list_users(api: httpx.Client, people, who, status) -> None:
    assert api.get("/users", headers=_headers(who, people)).status_code == status


def test_only_admins_choose_roles(api: httpx.Client, people) -> None:
    body = {"name": "Mallory", "email": "mallory@example.com", "password": PASSWORD,
            "role": "admin"}
    assert api.post("/users", json=body).status_code == 403
    assert api.post("/users", json=body, headers=people["alice"].headers).status_code == 403
    alice = people["alice"]
    promote = {"name": "Alice", "email": alice.email, "role": "admin"}
    assert api.put(f"/users/{alice.id}", json=promote, headers=alice.headers).status_code == 403
    made = api.post("/users", json=body, headers=people["admin"].headers)
    assert made.status_code == 201 and made.json()["role"] == "admin"


@pytest.mark.parametrize("who, create, update, delete", [
    ("anon", 401, 401, 401), ("alice", 403, 403, 403), ("admin", 201, 200, 204)])
def test_product_writes_need_an_admin(api: httpx.Client, people, who, create, update,
                                      delete) -> None:
    headers = _headers(who, people)
    sku = f"ACL-{who}"
    assert api.post("/products", json={"id": sku, "name": "x", "price": "1.00"},
                    headers=headers).status_code == create
    target = sku if create == 201 else "P001"
    assert api.put(f"/products/{target}", json={"price": "2.00"},
                   headers=headers).status_code == update
    assert api.delete(f"/products/{target}", headers=headers).status_code == delete
    assert api.get("/products", headers=headers).status_code == 200


@pytest.fixture(scope="module")
def alice_order(api: httpx.Client, people, new_product) -> dict:
    product = new_product(stock=50)
    answer = api.post("/orders", json={"items": [{"product_id": product["id"], "quantity": 1}],
                                       "payment": {"token": "tok_visa"}},
                      headers=people["alice"].headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.mark.parametrize("who, status", [("anon", 401), ("alice", 200), ("bob", 404),
                                         ("admin", 200)])
def test_read_an_order(api: httpx.Client, people, alice_order, who, status) -> None:
    answer = api.get(f"/orders/{alice_order['id']}", headers=_headers(who, people))
    assert answer.status_code == status


def test_order_lists_are_scoped(api: httpx.Client, people, alice_order) -> None:
    assert api.get("/orders").status_code == 401
    bobs = api.get("/orders", headers=people["bob"].headers).json()
    assert alice_order["id"] not in {o["id"] for o in bobs}
    # A customer cannot widen the list to someone else's orders.
    spying = api.get("/orders", params={"customer": people["alice"].id},
                     headers=people["bob"].headers).json()
    assert alice_order["id"] not in {o["id"] for o in spying}
    everything = api.get("/orders", params={"customer": people["alice"].id, "limit": 100},
                         headers=people["admin"].headers).json()
    assert alice_order["id"] in {o["id"] for o in everything}


def test_other_customers_cannot_change_or_cancel(api: httpx.Client, people, alice_order) -> None:
    bob = people["bob"].headers
    assert api.put(f"/orders/{alice_order['id']}", json={"note": "mine now"},
                   headers=bob).status_code == 404
    assert api.delete(f"/orders/{alice_order['id']}", headers=bob).status_code == 404
    assert api.get(f"/orders/{alice_order['id']}",
                   headers=people["alice"].headers).json()["note"] != "mine now"


def test_customers_cannot_ship_but_admins_can(api: httpx.Client, people, alice_order) -> None:
    url = f"/orders/{alice_order['id']}"
    assert api.put(url, json={"status": "shipped"},
                   headers=people["alice"].headers).status_code == 403
    shipped = api.put(url, json={"status": "shipped"}, headers=people["admin"].headers)
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped"
    # A shipped order can no longer be cancelled.
    assert api.delete(url, headers=people["alice"].headers).status_code == 400


def test_the_customer_of_an_order_is_the_token_subject(api: httpx.Client, people,
                                                      new_product) -> None:
    product = new_product()
    body = {"items": [{"product_id": product["id"], "quantity": 1}],
            "payment": {"token": "tok_visa"}, "customer": people["bob"].id}
    assert api.post("/orders", json=body, headers=people["alice"].headers).status_code == 400
    del body["customer"]
    placed = api.post("/orders", json=body, headers=people["alice"].headers)
    assert placed.json()["customer"] == people["alice"].id


@pytest.mark.parametrize("who, status", [("anon", 401), ("alice", 403), ("admin", 200)])
def test_admin_upstreams(api: httpx.Client, people, who, status) -> None:
    answer = api.get("/admin/upstreams", headers=_headers(who, people))
    assert answer.status_code == status
    if status == 200:
        assert set(answer.json()) == {"user", "product", "order"}
