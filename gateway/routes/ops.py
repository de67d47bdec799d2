"""Operations endpoints: liveness, readiness, metrics, upstream state and the local API docs."""

from __future__ import annotations

import asyncio
import importlib.resources

import redis.asyncio as redis
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

from gateway import metrics
from gateway.errors import Problem
from gateway.routes.dispatch import principal_of
from gateway.upstream.call import Upstream

DOCS_PREFIXES = ("/docs", "/redoc")


def router(upstream: Upstream, redis_client: redis.Redis | None) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> Response:
        checks = {f"service:{name}": ok for name, ok in upstream.ready().items()}
        if redis_client is not None:
            try:
                async with asyncio.timeout(1):
                    checks["redis"] = bool(await redis_client.ping())
            except (redis.RedisError, OSError, TimeoutError):
                checks["redis"] = False
        if not all(checks.values()):
            down = ", ".join(sorted(name for name, ok in checks.items() if not ok))
            raise Problem(503, f"not ready: {down}", code="NOT_READY",
                          headers={"Retry-After": "1"})
        return Response(b'{"status":"ready"}', media_type="application/json")

    @api.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @api.get("/admin/upstreams")
    async def upstreams(request: Request) -> dict:
        principal = principal_of(request)
        if principal is None:
            raise Problem(401, "sign in as an admin", code="UNAUTHENTICATED")
        if not principal.is_admin:
            raise Problem(403, "this operation needs an admin", code="PERMISSION_DENIED")
        return {label: [{"address": i.address, "healthy": i.healthy,
                         "breaker": i.breaker.state} for i in pool.instances]
                for label, pool in upstream.pools.items()}

    return api


def mount_docs(app: FastAPI) -> None:
    """Swagger UI and ReDoc with their assets served from this process (no CDN)."""
    static = importlib.resources.files("fastapi_offline") / "static"
    app.mount("/docs/static", StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Portico API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> Response:
        return get_redoc_html(openapi_url="/openapi.json", title="Portico API",
                              redoc_js_url="/docs/static/redoc.standalone.js",
                              redoc_favicon_url="/docs/static/favicon.png",
                              with_google_fonts=False)
