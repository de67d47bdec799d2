"""The app factory: wiring only. Reads the settings once and hands plain values to components.

The app is FastAPI entered through the edge pipeline (gateway/edge/front.py, pipeline.py): every
request goes through its steps; FastAPI's router answers what the pipeline hands it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateway import openapi
from gateway.edge.accesslog import AccessLog
from gateway.edge.front import EdgeApp
from gateway.edge.pipeline import EdgeConfig
from gateway.edge.request import Limits
from gateway.edge.respond import EdgeHeaders
from gateway.edge.tracing import EdgeTracing
from gateway.errors import install_handlers
from gateway.policies.auth import Authenticator, Revocations
from gateway.policies.cache import ResponseCache
from gateway.policies.ratelimit import RateLimiter, standard_policies
from gateway.policies.redis import RedisLink, redis_client
from gateway.policies.traced import traced
from gateway.routes import auth, ops, orders, products, users
from gateway.routes.dispatch import Dispatcher
from gateway.routes.resolve import RouteTable
from gateway.settings import GatewaySettings, get_settings
from gateway.upstream.call import BreakerConfig, RetryBudget, Upstream
from gateway.upstream.discovery import DiscoveryConfig
from services.common.logs import configure_logging
from services.common.mtls import channel_credentials
from services.common.pki import material
from services.common.tracing.setup import configure as configure_tracing
from services.common.tracing.state import active as tracing_active

VERSION = "0.1.0"
RESOURCES = (users, auth, products, orders)
SERVICES = {
    "user": "portico.user.v1.UserService",
    "product": "portico.product.v1.ProductService",
    "order": "portico.order.v1.OrderService",
}


def all_routes():
    return [route for module in RESOURCES for route in module.ROUTES]


def create_app(settings: GatewaySettings | None = None) -> EdgeApp:
    settings = settings or get_settings()
    configure_logging("gateway", settings.log_level)
    configure_tracing("portico-gateway")  # when the OTEL_* settings ask for traces
    client = redis_client(settings.redis_url, settings.redis_mode)
    link = RedisLink(client, timeout=settings.redis_timeout_seconds)
    upstream = Upstream(
        {label: (SERVICES[label], getattr(settings, f"{label}_addrs")) for label in SERVICES},
        breaker=BreakerConfig(settings.breaker_failure_threshold,
                              settings.breaker_reset_timeout_seconds),
        timeout=settings.upstream_timeout_seconds, max_attempts=settings.retry_max_attempts,
        initial_backoff=settings.retry_initial_backoff_seconds,
        max_backoff=settings.retry_max_backoff_seconds,
        budget=RetryBudget(settings.retry_budget_ratio, settings.retry_budget_min_per_second),
        credentials=channel_credentials(material(settings, "gateway")),
        discovery=DiscoveryConfig(settings.discovery_interval_seconds,
                                  settings.discovery_timeout_seconds))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream.start(settings.health_check_interval_seconds)
        # Everything made at start-up lives as long as the process: keep the collector off it.
        gc.collect()
        gc.freeze()
        # Requests make short-lived objects by the thousand: collect the young generation less
        # often (its pauses drive the p99), the old ones as usual.
        gc.set_threshold(50_000, 20, 20)
        try:
            yield
        finally:
            await upstream.close()
            await link.close()
            await client.aclose()

    dispatcher = Dispatcher(upstream)
    # The API's routes are the app's own: an included router is matched twice per request.
    api_routes = [route for module in RESOURCES for route in module.router(dispatcher).routes]
    app = EdgeApp(edge=_edge(settings, link, dispatcher, api_routes), outer=_cors(settings),
                  title="Portico", version=VERSION, lifespan=lifespan, routes=api_routes,
                  docs_url=None, redoc_url=None, redirect_slashes=False,
                  # Its per-request check costs ~4% of a cached GET; /metrics covers it.
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    install_handlers(app)
    app.include_router(ops.router(upstream, client, ops.Scrapers(
        settings.metrics_networks, settings.trusted_proxies)))
    ops.mount_docs(app)
    openapi.install(app, version=VERSION)
    return app


def _edge(settings: GatewaySettings, link: RedisLink, dispatcher: Dispatcher,
          api_routes: list) -> EdgeConfig:
    table = RouteTable([*all_routes(), *ops.ROUTES], prefixes=[ops.DOCS_ASSETS])
    by_endpoint = {(route.verb, route.path): route for route in all_routes()}
    for endpoint in api_routes:
        if isinstance(endpoint, APIRoute):
            for method in endpoint.methods:
                table.take_query(by_endpoint[(method, endpoint.path)], {
                    field.alias: _kind(field.field_info.annotation)
                    for field in endpoint.dependant.query_params})
    limiter = None
    if settings.rate_limit_enabled:
        limiter = RateLimiter(
            link, standard_policies(
                rate=settings.rate_limit_rate, burst=settings.rate_limit_burst,
                login_rate=settings.login_rate_limit_rate,
                login_burst=settings.login_rate_limit_burst,
                signup_rate=settings.signup_rate_limit_rate,
                signup_burst=settings.signup_rate_limit_burst),
            trusted_proxies=settings.trusted_proxies, fail_open=settings.rate_limit_fail_open)
    cache = None
    if settings.cache_enabled:
        cache = ResponseCache(link, ttl=settings.cache_ttl_seconds,
                              max_stale=settings.cache_max_stale_seconds)
    limiter, cache = traced(limiter, cache)  # spans of theirs, while traces are on
    return EdgeConfig(
        table=table,
        authenticator=Authenticator.from_file(settings.public_key_path,
                                              issuer=settings.jwt_issuer),
        revocations=Revocations(link),
        limiter=limiter, cache=cache, dispatcher=dispatcher,
        limits=Limits(max_header_bytes=settings.max_header_bytes,
                      max_target_bytes=settings.max_target_bytes,
                      max_body_bytes=settings.max_body_bytes),
        headers=EdgeHeaders(hsts=settings.tls_cert_file is not None),
        access_log=AccessLog(enabled=settings.access_log),
        body_timeout=settings.body_timeout_seconds,
        tracing=EdgeTracing(trusted_proxies=settings.trusted_proxies) if tracing_active()
        else None)


def _cors(settings: GatewaySettings) -> list[Middleware]:
    """CORS, off unless origins are named; outside the pipeline, so that answers the pipeline
    makes itself (cached, GETs by id) carry its headers too."""
    if not settings.cors_origins:
        return []
    return [Middleware(
        CORSMiddleware, allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
        expose_headers=["Location", "Link", "X-Request-ID", "RateLimit-Limit",
                        "RateLimit-Remaining", "RateLimit-Reset", "Retry-After", "ETag",
                        "X-Cache", "Age"])]


def _kind(annotation: object) -> type:
    return int if annotation is int else str
