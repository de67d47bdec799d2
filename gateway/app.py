"""The app factory: wiring only. Reads the settings once and hands plain values to components."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.middleware import Middleware

from gateway import openapi
from gateway.edge.access import RouteLabels
from gateway.edge.chain import build_chain
from gateway.errors import install_handlers
from gateway.policies import build as policies
from gateway.policies.auth import TokenVerifier
from gateway.routes import auth, ops, orders, products, users
from gateway.routes.direct import DirectRoutes
from gateway.routes.dispatch import Dispatcher
from gateway.settings import GatewaySettings, get_settings
from gateway.upstream.call import BreakerConfig, RetryBudget, Upstream
from services.common.logs import configure_logging
from services.common.mtls import channel_credentials
from services.common.pki import material

VERSION = "0.1.0"
RESOURCES = (users, auth, products, orders)
SERVICES = {
    "user": "portico.user.v1.UserService",
    "product": "portico.product.v1.ProductService",
    "order": "portico.order.v1.OrderService",
}


def all_routes():
    return [route for module in RESOURCES for route in module.ROUTES]


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging("gateway", settings.log_level)
    redis_client = policies.redis_client(settings.redis_url)
    edge = policies.build(settings, redis_client)
    upstream = Upstream(
        {label: (SERVICES[label], getattr(settings, f"{label}_addrs")) for label in SERVICES},
        breaker=BreakerConfig(settings.breaker_failure_threshold,
                              settings.breaker_reset_timeout_seconds),
        timeout=settings.upstream_timeout_seconds, max_attempts=settings.retry_max_attempts,
        initial_backoff=settings.retry_initial_backoff_seconds,
        max_backoff=settings.retry_max_backoff_seconds,
        budget=RetryBudget(settings.retry_budget_ratio, settings.retry_budget_min_per_second),
        credentials=channel_credentials(material(settings, "gateway")))

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
            await edge.redis.close()
            await redis_client.aclose()

    labels = RouteLabels([r.path for r in all_routes()] + ["/healthz", "/readyz", "/metrics"])
    dispatch = Dispatcher(upstream)
    chain = build_chain(
        settings, verifier=TokenVerifier.from_file(settings.public_key_path,
                                                   issuer=settings.jwt_issuer),
        labels=labels, policies=edge,
        docs_prefixes=ops.DOCS_PREFIXES,
        direct_routes=Middleware(DirectRoutes, routes=all_routes(), dispatch=dispatch))
    # The API's routes are the app's own: an included router is matched twice per request.
    routes = [route for module in RESOURCES for route in module.router(dispatch).routes]
    app = FastAPI(title="Portico", version=VERSION, lifespan=lifespan, middleware=chain,
                  routes=routes, docs_url=None, redoc_url=None, redirect_slashes=False,
                  # Its per-request check costs ~4% of a cached GET; /metrics covers it.
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    install_handlers(app)
    app.include_router(ops.router(upstream, redis_client))
    ops.mount_docs(app)
    openapi.install(app, version=VERSION)
    return app
