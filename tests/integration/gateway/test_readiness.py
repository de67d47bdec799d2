"""/readyz names what is down: the services without a usable instance, and Redis (pinged at most
once a second, however often the probe is asked)."""

from __future__ import annotations

import asyncio

from tests.integration.gateway.conftest import gateway_client, settings_for


async def test_readyz_names_what_is_down(signing_key) -> None:
    # Nothing listens on port 1: no service instance and no Redis.
    settings = settings_for("127.0.0.1:1", signing_key, "redis://127.0.0.1:1/0")
    async with gateway_client(settings) as http:
        answers = await asyncio.gather(*(http.get("/readyz") for _ in range(20)))
    for answer in answers:
        assert answer.status_code == 503, answer.text
        detail = answer.json()["detail"]
        assert "redis" in detail and "service:product" in detail, detail
        assert answer.headers["retry-after"] == "1"
