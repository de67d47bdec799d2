"""The Redis-backed edge policies (rate limit, response cache), built from the settings.

One Redis client per process serves both. It fails fast (a short timeout on every call, no
client-side retries): the policies treat a slow Redis as an absent one and fall back on their
own.
"""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.middleware import Middleware

from gateway.edge.chain import EdgePolicies
from gateway.policies.batch import RedisBatcher
from gateway.policies.buckets import RedisTokenBucket
from gateway.policies.cache import CacheMiddleware, CacheRule, LookupPlan
from gateway.policies.ratelimit import RateLimitMiddleware, standard_policies
from gateway.settings import GatewaySettings

# Public GETs only: products are the same for every caller. Users and orders are private and
# never get a rule, so they are never served from this shared cache.
CACHE_RULES = (
    CacheRule(r"^/products/?$", "product"),
    CacheRule(r"^/products/(?P<id>[A-Za-z0-9_-]{1,64})/?$", "product", "id"),
)


def redis_client(url: str) -> redis.Redis:
    # No socket_timeout: redis-py would wrap every command in asyncio.wait_for, a Task per
    # call. Each user of the client bounds its calls with asyncio.timeout instead.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


def build(settings: GatewaySettings, client: redis.Redis) -> EdgePolicies:
    rate_limit = cache = None
    # One batcher for both: the cache's fills go out in the rate limiter's pipelines.
    batcher = RedisBatcher(client, timeout=settings.redis_timeout_seconds)
    if settings.rate_limit_enabled:
        rate_limit = Middleware(
            RateLimitMiddleware, limiter=RedisTokenBucket(client, batcher=batcher),
            policies=standard_policies(rate=settings.rate_limit_rate,
                                       burst=settings.rate_limit_burst,
                                       login_rate=settings.login_rate_limit_rate,
                                       login_burst=settings.login_rate_limit_burst),
            trusted_proxies=settings.trusted_proxies, fail_open=settings.rate_limit_fail_open,
            # A cache lookup rides in the limiter's round trip: one Redis call per cache hit.
            read_along=LookupPlan(CACHE_RULES) if settings.cache_enabled else None)
    if settings.cache_enabled:
        cache = Middleware(CacheMiddleware, redis=client, rules=CACHE_RULES,
                           ttl=settings.cache_ttl_seconds,
                           max_stale=settings.cache_max_stale_seconds, batcher=batcher)
    return EdgePolicies(rate_limit=rate_limit, cache=cache, redis=batcher)
