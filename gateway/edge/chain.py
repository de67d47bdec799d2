"""The edge chain, in order: the one place where the order of the middlewares is decided.

request id -> trailing slash -> access log + metrics -> security headers -> CORS -> body-size
limit -> JSON-only writes -> authentication -> rate limit -> refusal of bad tokens -> response
cache -> route (GETs by id straight from the route table, gateway/routes/direct.py; the rest
through FastAPI's router)

A bad token is refused after the rate limiter, so that requests carrying one are limited (and
answered with RateLimit-* headers) like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateway.edge.access import AccessMiddleware, RouteLabels
from gateway.edge.guards import BodyLimitMiddleware, JsonBodyMiddleware
from gateway.edge.requestid import RequestIdMiddleware
from gateway.edge.security import SecurityHeadersMiddleware
from gateway.edge.slash import TrailingSlashMiddleware
from gateway.policies.auth import AuthMiddleware, RefuseBadTokens, TokenVerifier
from gateway.policies.batch import RedisBatcher
from gateway.settings import GatewaySettings


@dataclass(frozen=True)
class EdgePolicies:
    """The Redis-backed policies, built by the app factory (None: switched off)."""

    rate_limit: Middleware | None
    cache: Middleware | None
    redis: RedisBatcher  # their Redis calls: closed (queued writes sent) at shutdown


def build_chain(settings: GatewaySettings, *, verifier: TokenVerifier, labels: RouteLabels,
                policies: EdgePolicies, docs_prefixes: tuple[str, ...],
                direct_routes: Middleware) -> list[Middleware]:
    """The middleware list, outermost first."""
    chain = [
        Middleware(RequestIdMiddleware),
        Middleware(TrailingSlashMiddleware),
        Middleware(AccessMiddleware, labels=labels, log_requests=settings.access_log),
        Middleware(SecurityHeadersMiddleware, hsts=settings.tls_cert_file is not None,
                   docs_prefixes=docs_prefixes),
    ]
    if settings.cors_origins:
        chain.append(Middleware(
            CORSMiddleware, allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Location", "Link", "X-Request-ID", "RateLimit-Limit",
                            "RateLimit-Remaining", "RateLimit-Reset", "Retry-After", "ETag",
                            "X-Cache", "Age"]))
    chain += [
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        Middleware(JsonBodyMiddleware),
        Middleware(AuthMiddleware, verifier=verifier),
    ]
    chain += [m for m in (policies.rate_limit, Middleware(RefuseBadTokens), policies.cache)
              if m is not None]
    return [*chain, direct_routes]
