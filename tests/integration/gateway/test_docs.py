"""/docs and /redoc work with their assets served by the gateway itself (no CDN)."""

from __future__ import annotations

import re

import pytest


@pytest.fixture(scope="module")
def client(offline_gateway):
    return offline_gateway


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(client, page) -> None:
    answer = await client.get(page)
    assert answer.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', answer.text)
    assert assets and all(a.startswith("/docs/static/") for a in assets), assets
    for asset in assets:
        assert (await client.get(asset)).status_code == 200, asset
    assert "/openapi.json" in answer.text
