"""The one generic handler: validated fields -> request message -> upstream call -> JSON."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode

import grpc
from fastapi import Request, Response

from gateway.errors import Problem, from_rpc_error
from gateway.policies.auth import Principal
from gateway.routes.table import Access, Route
from gateway.transcode import TranscodeError, to_json, to_message
from gateway.upstream.call import CallPolicy, Upstream
from gateway.upstream.pool import NoInstanceAvailable

log = logging.getLogger("portico.gateway.dispatch")


class Dispatcher:
    """Serves any Route through the upstream call chain."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def __call__(self, route: Route, request: Request, fields: dict[str, Any], *,
                       idempotency_key: str | None = None) -> Response:
        message = _build(route, fields)
        policy = CallPolicy(retry_unavailable=route.idempotent or bool(idempotency_key),
                            read=route.read)
        call = self.upstream.call(route.service, route.stub, route.method, message,
                                  policy=policy, request_id=request.state.request_id,
                                  token=bearer_token(request))
        try:
            answer = await _cancel_on_disconnect(request, call)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        except NoInstanceAvailable as error:
            pool = self.upstream.pools[route.service]
            log.warning("no usable instance", extra={"upstream": route.service, "instances": [
                (i.address, i.healthy, i.breaker.state) for i in pool.instances]})
            raise Problem(503, f"no instance of the {error.service} service is available",
                          code="NO_INSTANCE",
                          headers={"Retry-After": str(max(1, round(error.retry_after)))}) from None
        except _ClientGone:
            return Response(status_code=499)
        return _render(route, request, answer, fields)


def principal_of(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def bearer_token(request: Request) -> str | None:
    """The caller's access token, passed on to the service (which checks it again, and checks
    revocations); only one the edge accepted, so never a malformed header."""
    if principal_of(request) is None:
        return None
    return request.headers["authorization"].partition(" ")[2].strip()


def require(route: Route, request: Request, *, owner: str | None = None) -> Principal | None:
    """Applies the route's access rule; `owner` is the user id a SELF_OR_ADMIN route is about.
    Users may not act on other users (403, decided without a lookup, so it reveals nothing);
    orders of other customers are NOT_FOUND by the order service itself."""
    principal = principal_of(request)
    if route.access is Access.PUBLIC:
        return principal
    if principal is None:
        raise Problem(401, f"this operation needs {route.access.value}: sign in first",
                      code="UNAUTHENTICATED")
    if route.access is Access.ADMIN and not principal.is_admin:
        raise Problem(403, "this operation needs an admin", code="PERMISSION_DENIED")
    if route.access is Access.SELF_OR_ADMIN and not principal.is_admin \
            and owner != principal.subject:
        raise Problem(403, "you may only act on your own user", code="PERMISSION_DENIED")
    return principal


def _build(route: Route, fields: dict[str, Any]):
    try:
        return to_message(route.request, fields)
    except TranscodeError as error:
        raise Problem(400, f"the request does not fit {route.request.__name__}: {error}",
                      code="INVALID_ARGUMENT") from None


class _ClientGone(Exception):
    pass


# Calls answered sooner are left to finish when their client goes: watching every call would
# cost a task per request, and cancelling a short call saves the service next to nothing.
WATCH_AFTER_SECONDS = 0.2


async def _cancel_on_disconnect(request: Request, call: Any) -> Any:
    """Awaits the upstream call, cancelling it when the client goes away first (watched from
    WATCH_AFTER_SECONDS into the call)."""
    handler = asyncio.current_task()
    gone = False
    watcher: asyncio.Future | None = None

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        handler.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(watch())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, start_watching)
    try:
        return await call
    except asyncio.CancelledError:
        if not gone:
            raise
        handler.uncancel()
        raise _ClientGone() from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


def _render(route: Route, request: Request, answer: Any, fields: dict[str, Any]) -> Response:
    if route.status == 204:
        return Response(status_code=204)
    if route.list_field:
        headers = {}
        token = answer.next_page_token
        if token:
            headers["Link"] = _next_link(request, token)
        return Response(to_json(list(getattr(answer, route.list_field))), headers=headers,
                        media_type="application/json")
    body = getattr(answer, route.response_field) if route.response_field else answer
    headers = {}
    if route.location:
        headers["Location"] = route.location.format(id=body.id)
    return Response(to_json(body), status_code=route.status, headers=headers,
                    media_type="application/json")


def _next_link(request: Request, token: str) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    query.append(("cursor", token))
    return f'<{request.url.path.rstrip("/")}?{urlencode(query)}>; rel="next"'
