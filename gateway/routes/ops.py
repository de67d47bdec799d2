"""Operations endpoints: liveness, readiness, metrics, upstream state and the local API docs."""

from __future__ import annotations

import asyncio
import importlib.resources
import time
from collections.abc import Awaitable, Callable, Iterable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

from gateway import metrics
from gateway.edge.context import context_of
from gateway.errors import Problem
from gateway.policies.access import authorize
from gateway.policies.clientip import client_ip, inside, parse_networks
from gateway.routes.table import Access, own
from gateway.upstream.call import Upstream
from services.common.redisconn import FAILURES, AnyRedis

# Probes and scrapes are never rate limited (nor shed: gateway/edge/admission.py).
HEALTHZ = own("GET", "/healthz")
READYZ = own("GET", "/readyz")
METRICS = own("GET", "/metrics")
UPSTREAMS = own("GET", "/admin/upstreams", access=Access.ADMIN, rate="default")
OPENAPI = own("GET", "/openapi.json", rate="default")
DOCS = own("GET", "/docs", rate="default", docs=True)
REDOC = own("GET", "/redoc", rate="default", docs=True)
DOCS_ASSETS = own("GET", "/docs/static", rate="default", docs=True)  # a prefix
ROUTES = (HEALTHZ, READYZ, METRICS, UPSTREAMS, OPENAPI, DOCS, REDOC)


class Scrapers:
    """Who may read /metrics: clients (behind `trusted` proxies, the address they forwarded)
    within `networks`."""

    def __init__(self, networks: Iterable[str], trusted: Iterable[str]) -> None:
        self._networks = parse_networks(networks)
        self._trusted = parse_networks(trusted)

    def allow(self, request: Request) -> bool:
        peer = request.client.host if request.client else None
        forwarded = ", ".join(request.headers.getlist("x-forwarded-for")) or None
        return inside(client_ip(peer, forwarded, self._trusted), self._networks)


class Recent:
    """`check()`'s answer, asked for at most once per `seconds` however often it is wanted
    (probes are neither rate limited nor shed: a client asking in a loop must not cost a Redis
    round trip each time); concurrent askers share the check in progress."""

    def __init__(self, check: Callable[[], Awaitable[bool]], seconds: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._check = check
        self._seconds = seconds
        self._clock = clock
        self._answer: tuple[float, bool] | None = None  # (when, what)
        self._running: asyncio.Future[bool] | None = None

    async def __call__(self) -> bool:
        if self._answer is not None and self._clock() - self._answer[0] < self._seconds:
            return self._answer[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        return await asyncio.shield(self._running)

    async def _run(self) -> bool:
        try:
            answer = await self._check()
            self._answer = (self._clock(), answer)
            return answer
        finally:
            self._running = None


def router(upstream: Upstream, redis_client: AnyRedis | None, scrapers: Scrapers) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    async def redis_up() -> bool:
        try:
            async with asyncio.timeout(1):
                return bool(await redis_client.ping())
        except FAILURES:  # a cluster without a map of its slots raises no RedisError
            return False

    redis_ready = Recent(redis_up)

    @api.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> Response:
        checks = {f"service:{name}": ok for name, ok in upstream.ready().items()}
        if redis_client is not None:
            checks["redis"] = await redis_ready()
        if not all(checks.values()):
            down = ", ".join(sorted(name for name, ok in checks.items() if not ok))
            raise Problem(503, f"not ready: {down}", code="NOT_READY",
                          headers={"Retry-After": "1"})
        return Response(b'{"status":"ready"}', media_type="application/json")

    @api.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not scrapers.allow(request):
            raise Problem(404, f"there is no {METRICS.path}")
        # OpenMetrics for scrapers that ask for it (Prometheus does): it carries exemplars.
        body, content_type = metrics.render(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    @api.get("/admin/upstreams")
    async def upstreams(request: Request) -> dict:
        authorize(UPSTREAMS, context_of(request).principal, {})
        return {label: [{"address": i.address, "healthy": i.healthy,
                         "breaker": i.breaker.state} for i in pool.instances]
                for label, pool in upstream.pools.items()}

    return api


def mount_docs(app: FastAPI) -> None:
    """Swagger UI and ReDoc with their assets served from this process (no CDN)."""
    static = importlib.resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS.path, StaticFiles(directory=str(static)), name="docs-static")

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
