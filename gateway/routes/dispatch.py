"""The one generic handler: access rule -> request message -> upstream call -> JSON answer.

Every route goes through it, whoever received the request (the pipeline for a GET by id, a
FastAPI endpoint for the rest), so a route's access rule is enforced in one place for all.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.requests import Request
from starlette.responses import Response

from gateway.answer import Answer, json_answer
from gateway.edge.context import EdgeContext, context_of
from gateway.errors import Problem, from_rpc_error
from gateway.policies.access import authorize
from gateway.routes.table import Route
from gateway.transcode import TranscodeError, to_json, to_message
from gateway.upstream.call import CallPolicy, Upstream
from gateway.upstream.pool import NoInstanceAvailable

log = logging.getLogger("portico.gateway.dispatch")

# Calls answered sooner are left to finish when their client goes: watching every call would
# cost a task per request, and cancelling a short call saves the service next to nothing.
WATCH_AFTER_SECONDS = 0.2


class Dispatcher:
    """Serves any Route through the upstream call chain."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def serve(self, route: Route, context: EdgeContext, fields: dict[str, Any], *,
                    idempotency_key: str | None = None) -> Answer:
        """The answer to a call of `route` with `fields`, on behalf of the context's caller;
        raises Problem for anything but a success."""
        fields = authorize(route, context.principal, fields)
        message = _build(route, fields)
        policy = CallPolicy(retry_unavailable=route.idempotent or bool(idempotency_key),
                            read=route.read)
        call = self.upstream.call(route.service, route.stub, route.method, message,
                                  policy=policy, request_id=context.request_id,
                                  token=context.principal.token if context.principal else None)
        try:
            answer = await _cancel_on_disconnect(context, call)
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
            return Answer(499)
        return _render(route, context, answer)

    async def respond(self, route: Route, request: Request, fields: dict[str, Any], *,
                      idempotency_key: str | None = None) -> Response:
        """`serve` for a FastAPI endpoint."""
        answer = await self.serve(route, context_of(request), fields,
                                  idempotency_key=idempotency_key)
        response = Response(answer.body, status_code=answer.status)
        response.raw_headers = answer.headers
        return response


def _build(route: Route, fields: dict[str, Any]):
    try:
        return to_message(route.request, fields)
    except TranscodeError as error:
        raise Problem(400, f"the request does not fit {route.request.__name__}: {error}",
                      code="INVALID_ARGUMENT") from None


class _ClientGone(Exception):
    pass


async def _cancel_on_disconnect(context: EdgeContext, call: Any) -> Any:
    """Awaits the upstream call, cancelling it when the client goes away first (watched from
    WATCH_AFTER_SECONDS into the call)."""
    if context.receive is None:
        return await call
    receive = context.receive
    handler = asyncio.current_task()
    gone = False
    watcher: asyncio.Future | None = None

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
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


def _render(route: Route, context: EdgeContext, answer: Any) -> Answer:
    if route.status == 204:
        return Answer(204)
    if route.list_field:
        token = answer.next_page_token
        headers = [(b"link", _next_link(context, token).encode())] if token else []
        return json_answer(to_json(list(getattr(answer, route.list_field))), headers=headers)
    body = getattr(answer, route.response_field) if route.response_field else answer
    headers = []
    if route.location:
        headers.append((b"location", route.location.format(id=body.id).encode()))
    return json_answer(to_json(body), status=route.status, headers=headers)


def _next_link(context: EdgeContext, token: str) -> str:
    query = [(k, v) for k, v in context.query if k != "cursor"]
    query.append(("cursor", token))
    return f'<{context.path}?{urlencode(query)}>; rel="next"'
