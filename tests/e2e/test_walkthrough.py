"""The brief's examples through the real stack: the README's curl walk-through, in Python."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import PASSWORD, Account, bearer, login


def test_sign_up_log_in_and_read_yourself(api: httpx.Client) -> None:
    created = api.post("/users/", json={"name": "Jane Smith", "email": "jane@example.com",
                                        "password": PASSWORD})
    assert created.status_code == 201, created.text
    user = created.json()
    assert created.headers["Location"] == f"/users/{user['id']}"
    assert {"id", "name", "email"} <= user.keys()
    assert not {"password", "password_hash"} & user.keys()

    token = login(api, "JANE@example.com", PASSWORD)
    read = api.get(f"/users/{user['id']}", headers=bearer(token))
    assert read.status_code == 200
    assert read.json()["name"] == "Jane Smith"
    assert "password" not in read.text and "argon2" not in read.text

    duplicate = api.post("/users", json={"name": "J", "email": "Jane@Example.com",
                                         "password": PASSWORD})
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"


def test_products_created_by_admin_are_listed_and_read(api: httpx.Client, admin: Account) -> None:
    for sku, name in (("P001", "Product A"), ("P002", "Product B")):
        created = api.post("/products/", json={"id": sku, "name": name, "price": "19.99",
                                               "stock": 5}, headers=admin.headers)
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == f"/products/{sku}"
    listed = api.get("/products", params={"limit": 100})
    assert listed.status_code == 200
    names = {p["id"]: p["name"] for p in listed.json()}
    assert names["P001"] == "Product A" and names["P002"] == "Product B"
    read = api.get("/products/P001")
    assert read.status_code == 200
    assert read.json() | {"id": "P001", "name": "Product A", "price": "19.99"} == read.json()
    assert api.get("/products/P001/").status_code == 200   # no redirect


def test_paging_follows_the_link_header(api: httpx.Client, new_product) -> None:
    prefix = "Paged "
    made = {new_product(name=f"{prefix}{i:02d}")["id"] for i in range(7)}
    seen: list[str] = []
    url = f"/products?limit=3&name={prefix}"
    while url:
        page = api.get(url)
        assert page.status_code == 200
        seen += [p["id"] for p in page.json()]
        link = page.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else None
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))


def test_place_read_update_and_cancel_an_order(api: httpx.Client, new_customer,
                                               new_product) -> None:
    customer: Account = new_customer()
    product = new_product(price="0.10", stock=10)
    placed = api.post("/orders/", json={"items": [{"product_id": product["id"], "quantity": 3}],
                                        "payment": {"token": "tok_visa"},
                                        "shipping_address": "1 Main St"},
                      headers=customer.headers)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["total"] == "0.30" and order["status"] == "confirmed"
    assert order["customer"] == customer.id
    assert placed.headers["Location"] == f"/orders/{order['id']}"
    assert api.get(f"/products/{product['id']}").json()["stock"] == 7

    read = api.get(f"/orders/{order['id']}", headers=customer.headers)
    assert read.status_code == 200 and read.json()["items"][0]["quantity"] == 3
    mine = api.get("/orders", headers=customer.headers)
    assert [o["id"] for o in mine.json()] == [order["id"]]

    updated = api.put(f"/orders/{order['id']}", json={"note": "ring twice"},
                      headers=customer.headers)
    assert updated.status_code == 200 and updated.json()["note"] == "ring twice"

    cancelled = api.delete(f"/orders/{order['id']}", headers=customer.headers)
    assert cancelled.status_code == 204
    assert api.get(f"/orders/{order['id']}", headers=customer.headers).status_code == 404
    assert api.get(f"/products/{product['id']}").json()["stock"] == 10
