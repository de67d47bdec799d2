"""A tiny app behind RateLimitMiddleware, for running as a separate uvicorn process.

Configured from the environment: RATELIMIT_APP_REDIS_URL, RATELIMIT_APP_POLICY (the bucket's
name), RATELIMIT_APP_RATE and RATELIMIT_APP_BURST.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.metrics import render
from gateway.policies.ratelimit import RateLimitMiddleware, RatePolicy, RedisTokenBucket


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def metrics(request: Request) -> Response:
    body, content_type = render()
    return Response(body, media_type=content_type)


def build() -> ASGIApp:
    # Generous timeouts: two servers and their client share a busy test machine, and a timeout
    # would move a request onto this process's own bucket, which the test would count.
    client = Redis.from_url(os.environ["RATELIMIT_APP_REDIS_URL"], socket_timeout=2,
                            socket_connect_timeout=2)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = Starlette(routes=[Route("/hello", hello), Route("/healthz", hello),
                            Route("/metrics", metrics)],
                    lifespan=lifespan)
    policy = RatePolicy(name=os.environ["RATELIMIT_APP_POLICY"],
                        rate=float(os.environ["RATELIMIT_APP_RATE"]),
                        burst=int(os.environ["RATELIMIT_APP_BURST"]))
    return RateLimitMiddleware(app, limiter=RedisTokenBucket(client, call_timeout=2),
                               policies=[policy])


app = build()
