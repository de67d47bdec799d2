"""Request guards before any parsing: a body-size limit (413) and JSON-only writes (415)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import Problem, header, send_problem

_WRITES = frozenset({"POST", "PUT", "PATCH"})


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes`: at once when Content-Length says so, otherwise as soon
    as the streamed body goes past the limit (so a chunked upload cannot slip through)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refuse(scope, send, _too_large(self.max_bytes) if length.isdigit()
                          else Problem(400, "Content-Length is not a number"))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _refuse(scope, send, _too_large(self.max_bytes))


class JsonBodyMiddleware:
    """Writes that carry a body must say it is JSON (application/json or a +json type)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _WRITES and _has_body(scope):
            media = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                await _refuse(scope, send, Problem(
                    415, "send the body as JSON with Content-Type: application/json",
                    headers={"Accept": "application/json"}))
                return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the request body is larger than {limit} bytes")


def _has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    if length is not None:
        return length != "0"
    return header(scope, b"transfer-encoding") is not None


async def _refuse(scope: Scope, send: Send, problem: Problem) -> None:
    await send_problem(send, problem, instance=scope["path"],
                       request_id=scope.get("state", {}).get("request_id", "-"))
