"""The gateway app in this process (httpx over ASGI), against real gRPC servers on port 0."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.settings import GatewaySettings


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ed25519PrivateKey, Path]:
    """A key pair of the tests' own: the private key signs tokens, the gateway gets the file
    of the public one."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("keys") / "public.pem"
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, path


def make_token(key: Ed25519PrivateKey, subject: str, role: str = "customer", *,
               ttl: float = 600, issuer: str = "portico") -> str:
    now = int(time.time())
    return jwt.encode({"sub": subject, "role": role, "iat": now, "exp": now + int(ttl),
                       "iss": issuer}, key, algorithm="EdDSA")


@contextlib.asynccontextmanager
async def gateway_client(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, raise_app_exceptions=False,
                                        client=("203.0.113.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.fixture(scope="module")
async def offline_gateway(signing_key, redis_url) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway with no service behind it (every address refuses) and its Redis policies
    off: for what the edge answers on its own (sign-in checks, docs)."""
    nowhere = ["127.0.0.1:1"]
    settings = GatewaySettings(user_addrs=nowhere, product_addrs=nowhere, order_addrs=nowhere,
                               redis_url=redis_url, jwt_public_key_file=signing_key[1],
                               rate_limit_enabled=False, cache_enabled=False, access_log=False)
    async with gateway_client(settings) as http:
        yield http
