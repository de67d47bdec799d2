"""The edge pipeline: what every HTTP request goes through, in this order, written as code in
`EdgePipeline._steps`:

  1. parse       the request is read once; its id taken (when well-formed) or made
  2. route       resolved once from the route table; it carries every rule the steps use
  3. guards      head and target sizes (431, 414), body size (413), media type (415), query (400)
  4. sign-in     the bearer token verified (a bad one is 401)
  5. rate limit  one Redis round trip, which also reads what the cache needs
  6. refusals    from 3 and 4, now answered, with the RateLimit headers like any answer
  7. body        read whole, bounded in size (413) and time (408)
  8. cache       public GETs, from Redis or the upstream (one call per key and process)
  9. the call    GETs by id by the dispatcher straight away; the rest by FastAPI's router

The answer is sent once, with the edge's headers (request id, RateLimit-*, security); then one
access log line and the metrics. FastAPI validates bodies and queries against the documented
OpenAPI, serves the docs, and answers what the pipeline hands it (the pipeline fronts it:
gateway/edge/front.py). Before any of it, the server protocol (gateway/edge/protocol.py) bounds
the request head and sheds load past the in-flight limit (gateway/edge/admission.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.answer import Answer, Headers
from gateway.edge.accesslog import AccessLog
from gateway.edge.context import STATE_KEY, EdgeContext
from gateway.edge.request import EdgeRequest, Limits
from gateway.edge.respond import (
    BodyError,
    Capture,
    EdgeHeaders,
    Streamed,
    for_fastapi,
    problem_answer,
    read_body,
    replay,
    send_answer,
)
from gateway.edge.tracing import EdgeTracing
from gateway.errors import Problem, crashed, drop_tracebacks
from gateway.policies.auth import Authenticator, Revocations, checked, revocation_keys
from gateway.policies.buckets import Decision, ReadAlong
from gateway.policies.cache import CacheRequest, ResponseCache, cache_request
from gateway.policies.ratelimit import RateLimiter
from gateway.routes.dispatch import Dispatcher
from gateway.routes.resolve import ID, QueryError, RouteTable
from gateway.routes.table import Route
from services.common.logs import request_id_var


@dataclass(frozen=True)
class EdgeConfig:
    """The pipeline's parts, built by the app factory."""

    table: RouteTable
    authenticator: Authenticator
    revocations: Revocations
    limiter: RateLimiter | None
    cache: ResponseCache | None
    dispatcher: Dispatcher
    limits: Limits
    headers: EdgeHeaders
    access_log: AccessLog
    body_timeout: float
    # GETs by id served by the dispatcher straight away (False: through FastAPI's router, as
    # every other route; the answers are the same, only slower).
    serve_direct: bool = True
    # The root span of each request while traces are on (edge/tracing.py); None: off.
    tracing: EdgeTracing | None = None


class EdgePipeline:
    """The one ASGI layer of the edge, around FastAPI's router (`app`)."""

    def __init__(self, app: ASGIApp, *, config: EdgeConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        request = EdgeRequest.parse(scope)
        token = request_id_var.set(request.request_id)
        match = self.config.table.resolve(request.method, request.path)
        exchange = _Exchange(request, match.route, send, self.config.headers)
        tracing = self.config.tracing
        traced = tracing.begin(scope["headers"], request, match.label) if tracing else None
        context = EdgeContext(request.request_id, request.path, match.route, match.params,
                              receive=receive)
        try:
            await self._steps(exchange, context, scope, receive)
        except Exception:
            if exchange.started:  # an answer under way: the server logs it, drops the connection
                raise
            await self._answer(exchange, _problem(crashed(request.path), request))
        finally:
            self.config.access_log.record(
                method=request.method, path=request.path, label=match.label,
                status=exchange.status, elapsed=time.perf_counter() - began,
                sent=exchange.sent, client=request.peer,
                exemplar=traced.exemplar() if traced else None)
            if traced is not None:  # after the access log line, which carries its trace id
                traced.end(exchange.status)
            request_id_var.reset(token)
            # The server's cycle holds the scope, whose state holds the context: without this,
            # every request would end as a reference cycle left to the garbage collector.
            context.receive = None

    async def _steps(self, exchange: _Exchange, context: EdgeContext, scope: Scope,
                     receive: Receive) -> None:
        request, route, config = exchange.request, context.route, self.config
        refusal = self._guard(route, request, context)
        cached = self._cache_request(route, request, context) if refusal is None else None
        cache_keys = cached.read_along if cached else ()
        revocation = revocation_keys(context.principal) if context.principal else ()
        if self._limited(route, request):
            decision = await self._rate_limit(route, request, context,
                                              (*cache_keys, *revocation))
            if decision is None:
                await self._answer(exchange, _problem(self._limiter_unavailable(), request))
                return
            exchange.limit = decision.headers()
            if not decision.allowed:
                await self._answer(exchange, _problem(_refused(decision), request))
                return
            exchange.reads = decision.reads
        if refusal is None and context.principal is not None:
            refusal = await self._revocation(context, exchange.reads, len(cache_keys),
                                             revocation)
        if refusal is not None:
            await self._answer(exchange, _problem(refusal, request))
            return
        if request.has_body:
            try:
                receive = replay(await read_body(receive, limit=config.limits.max_body_bytes,
                                                 timeout=config.body_timeout), receive)
            except BodyError as error:
                await self._answer(exchange, _problem(error.problem, request))
                return
        scope.setdefault("state", {})[STATE_KEY] = context
        if cached is not None:
            reads = exchange.reads.part(0, len(cache_keys)) if exchange.reads else None
            answer = await config.cache.serve(
                cached, reads, lambda: self._call(route, context, scope, receive, request))
            await self._answer(exchange, answer)
        elif self._direct_route(route, context):
            await self._answer(exchange, await self._direct(route, context))
        else:
            await self._through_fastapi(exchange, scope, receive)

    def _guard(self, route: Route | None, request: EdgeRequest,
               context: EdgeContext) -> Problem | None:
        """The guards' refusal, else sign-in's (the principal goes into the context)."""
        refusal = self.config.limits.check(request)
        if refusal is None and route is not None and route.service is not None:
            refusal = self._query(route, request, context)
        if refusal is None and request.head_refusal is None:
            refusal = self._sign_in(request, context)
        return refusal

    def _sign_in(self, request: EdgeRequest, context: EdgeContext) -> Problem | None:
        try:
            context.principal = self.config.authenticator.authenticate(
                request.headers.get(b"authorization"))
        except Problem as problem:
            drop_tracebacks(problem)  # a value from here on, kept by the steps' frames
            return problem
        return None

    async def _revocation(self, context: EdgeContext, reads: ReadAlong | None, start: int,
                          keys: tuple[str, ...]) -> Problem | None:
        """Whether the caller's token was revoked, from the limiter's read or a read of its
        own; while Redis is down the principal goes on unverified (no admin rights)."""
        if reads is not None:
            values = reads.values[start:start + len(keys)]
        else:
            values = await self.config.revocations.values(keys)
        try:
            context.principal = checked(context.principal, values)
        except Problem as problem:
            return problem
        return None

    def _query(self, route: Route, request: EdgeRequest, context: EdgeContext) -> Problem | None:
        try:
            context.query = self.config.table.query(route, request.query)
        except QueryError as error:
            return Problem(400, str(error), code="INVALID_ARGUMENT",
                           errors=[{"field": "query", "message": str(error)}])
        return None

    def _cache_request(self, route: Route | None, request: EdgeRequest,
                       context: EdgeContext) -> CacheRequest | None:
        if self.config.cache is None or route is None or route.cache is None \
                or request.method not in ("GET", "HEAD"):
            return None
        if route.direct and not ID.fullmatch(context.params["id"]):
            return None  # FastAPI answers a bad id's 400: nothing to cache
        return cache_request(route.cache, path=request.path, params=context.params,
                             query=context.query, head=request.method == "HEAD",
                             cache_control=request.lists.get(b"cache-control", ()),
                             pragma=request.lists.get(b"pragma", ()),
                             if_none_match=request.joined(b"if-none-match"))

    def _limited(self, route: Route | None, request: EdgeRequest) -> bool:
        """Every request is rate limited but the probes and scrapes (routes without a policy);
        a cut-short head always is, whatever its truncated path resembles."""
        return self.config.limiter is not None and (
            route is None or route.rate is not None or request.head_refusal is not None)

    async def _rate_limit(self, route: Route | None, request: EdgeRequest, context: EdgeContext,
                          read_along: tuple[str, ...]) -> Decision | None:
        """The limiter's decision, with the keys later steps need read along (None: refused,
        the limiter failing closed)."""
        limiter = self.config.limiter
        trusted_route = route if request.head_refusal is None else None
        name = trusted_route.rate if trusted_route and trusted_route.rate else "default"
        policy = limiter.policies[name]
        subject = context.principal.subject if context.principal is not None else None
        key = limiter.key(policy, peer=request.peer,
                          forwarded_for=request.joined(b"x-forwarded-for"), subject=subject)
        return await limiter.take(policy, key, read_along)

    def _limiter_unavailable(self) -> Problem:
        seconds = self.config.limiter.retry_interval if self.config.limiter else 1
        return Problem(503, "rate limiting is unavailable; try again shortly",
                       code="RATE_LIMIT_UNAVAILABLE",
                       headers={"Retry-After": str(max(1, math.ceil(seconds)))})

    async def _call(self, route: Route, context: EdgeContext, scope: Scope, receive: Receive,
                    request: EdgeRequest) -> Answer:
        """The upstream's answer for the cache: the dispatcher's, or FastAPI's captured."""
        if self._direct_route(route, context):
            return await self._direct(route, context)
        capture = Capture()
        await self.app(for_fastapi(scope, request), receive, capture)
        return capture.answer()

    def _direct_route(self, route: Route | None, context: EdgeContext) -> bool:
        return (self.config.serve_direct and route is not None and route.direct
                and ID.fullmatch(context.params["id"]) is not None)

    async def _direct(self, route: Route, context: EdgeContext) -> Answer:
        try:
            return await self.config.dispatcher.serve(route, context, dict(context.params))
        except Problem as problem:
            return problem_answer(problem, instance=context.path,
                                  request_id=context.request_id)

    async def _through_fastapi(self, exchange: _Exchange, scope: Scope,
                               receive: Receive) -> None:
        request = exchange.request
        streamed = Streamed(exchange.send, exchange.finish, head=request.method == "HEAD")
        try:
            await self.app(for_fastapi(scope, request), receive, streamed)
        except Exception:
            if not streamed.finished:
                raise  # cut short: the server logs it and closes the connection
            # Answered whole by FastAPI's handler, which logged it (gateway/errors.py); raised
            # again only for the server, which would log it twice and close the connection.
        finally:
            exchange.status, exchange.sent = streamed.status, streamed.sent
            exchange.started = streamed.started

    async def _answer(self, exchange: _Exchange, answer: Answer) -> None:
        exchange.status, exchange.sent, exchange.started = answer.status, len(answer.body), True
        await send_answer(exchange.send, answer, exchange.finish(answer.headers),
                          head=exchange.request.method == "HEAD")


class _Exchange:
    """One request's answer as it is made: the rate limiter's headers and reads, what was
    sent (for the access log)."""

    def __init__(self, request: EdgeRequest, route: Route | None, send: Send,
                 headers: EdgeHeaders) -> None:
        self.request = request
        self.route = route
        self.send = send
        self.headers = headers
        self.limit: Headers = []
        self.reads: ReadAlong | None = None
        self.status = 500
        self.sent = 0
        self.started = False  # the answer's first message went out

    def finish(self, headers: Headers) -> Headers:
        """`headers` with every header the edge adds."""
        return self.headers.finish(headers, request_id=self.request.request_id,
                                   limit=self.limit,
                                   docs=self.route is not None and self.route.docs)


def _problem(problem: Problem, request: EdgeRequest) -> Answer:
    return problem_answer(problem, instance=request.path[:256], request_id=request.request_id)


def _refused(decision: Decision) -> Problem:
    # Retry-After comes with the decision's RateLimit headers.
    return Problem(429, f"rate limit exceeded; try again in {decision.retry_after_seconds} s",
                   code="RATE_LIMITED")
