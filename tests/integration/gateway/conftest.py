"""The gateway app in this process (httpx over ASGI), against real gRPC servers on port 0, over
mTLS with the session's development CA."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.trust import serve, session_state_dir


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


# The address the gateway sees the tests' client at: one on the internet (TEST-NET-3), so it
# may not read /metrics unless a test says so (`metrics_networks=[SCRAPER]`).
CLIENT = "203.0.113.9"
SCRAPER = f"{CLIENT}/32"


def settings_for(address: str, signing_key: tuple[Ed25519PrivateKey, Path], redis_url: str,
                 **overrides: Any) -> GatewaySettings:
    """Gateway settings with every service at `address` (one test server playing them all),
    the tests' public key, the session's PKI and no access log."""
    return GatewaySettings(**{
        "user_addrs": [address], "product_addrs": [address], "order_addrs": [address],
        "redis_url": redis_url, "jwt_public_key_file": signing_key[1], "access_log": False,
        "state_dir": session_state_dir(), **overrides})


@contextlib.asynccontextmanager
async def grpc_server(*registrations: tuple) -> AsyncIterator[str]:
    """A gRPC server on a free port with the given (add function, servicer, service name)
    registrations, open to every certificate of the session's CA; yields its address and stops
    it afterwards."""
    running = await serve(registrations)
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        await running.stop(0)


@contextlib.asynccontextmanager
async def gateway_client(settings: GatewaySettings, *,
                         prepare: Callable[[FastAPI], None] | None = None,
                         ) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app, started, behind an httpx client; `prepare` may change the app before
    its first request builds the middleware stack."""
    app = create_app(settings)
    if prepare is not None:
        prepare(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, raise_app_exceptions=False,
                                        client=(CLIENT, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@pytest.fixture(scope="module")
async def offline_gateway(signing_key, redis_url) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway with no service behind it (every address refuses) and its Redis policies
    off: for what the edge answers on its own (sign-in checks, docs)."""
    settings = settings_for("127.0.0.1:1", signing_key, redis_url, rate_limit_enabled=False,
                            cache_enabled=False)
    async with gateway_client(settings) as http:
        yield http
