"""Bearer tokens at the edge: verified with the public key alone; anything but a good token is
a 401 with WWW-Authenticate: Bearer."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integration.gateway.conftest import make_token


@pytest.fixture(scope="module")
def client(offline_gateway):
    return offline_gateway


def bad_tokens(key: Ed25519PrivateKey) -> dict[str, str]:
    stranger = Ed25519PrivateKey.generate()
    return {
        "expired": make_token(key, "u1", "admin", ttl=-60),
        "wrong key": make_token(stranger, "u1", "admin"),
        "wrong issuer": make_token(key, "u1", "admin", issuer="someone-else"),
        "unknown role": make_token(key, "u1", "root"),
        "garbage": "not.a.jwt",
        "tampered": make_token(key, "u1", "customer")[:-4] + "AAAA",
    }


@pytest.mark.parametrize("case", ["expired", "wrong key", "wrong issuer", "unknown role",
                                  "garbage", "tampered"])
async def test_bad_tokens_are_401(client, signing_key, case) -> None:
    token = bad_tokens(signing_key[0])[case]
    answer = await client.get("/products", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "token abc"])
async def test_malformed_authorization_headers_are_401(client, header) -> None:
    answer = await client.get("/products", headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_missing_token_on_a_private_route_is_401(client) -> None:
    answer = await client.get("/orders")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_a_good_token_is_accepted_without_any_upstream(client, signing_key) -> None:
    admin = make_token(signing_key[0], "u-admin", "admin")
    answer = await client.get("/admin/upstreams", headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 200
    customer = make_token(signing_key[0], "u-1", "customer")
    answer = await client.get("/admin/upstreams",
                              headers={"Authorization": f"Bearer {customer}"})
    assert answer.status_code == 403


async def test_customers_cannot_act_on_other_users(client, signing_key) -> None:
    token = make_token(signing_key[0], "u-1", "customer")
    answer = await client.get("/users/u-2", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403
