"""/docs and /redoc work with their assets served by the gateway itself (no CDN)."""

from __future__ import annotations

import re

import pytest

from gateway.settings import GatewaySettings
from tests.integration.gateway.conftest import gateway_client


@pytest.fixture(scope="module")
async def client(signing_key, redis_url):
    nowhere = ["127.0.0.1:1"]
    settings = GatewaySettings(user_addrs=nowhere, product_addrs=nowhere, order_addrs=nowhere,
                               redis_url=redis_url, jwt_public_key_file=signing_key[1],
                               rate_limit_enabled=False, cache_enabled=False, access_log=False)
    async with gateway_client(settings) as http:
        yield http


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(client, page) -> None:
    answer = await client.get(page)
    assert answer.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert assets and all(a.startswith("/docs/static/") for a in assets), assets
    for asset in assets:
        assert (await client.get(asset)).status_code == 200, asset
    assert "/openapi.json" in answer.text
