"""Sending the answer, once, with every header the edge adds (request id, RateLimit-*, security
headers); reading a request's body whole, bounded in size and time, before FastAPI sees it; and
what FastAPI is handed and gives back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import Message, Receive, Scope, Send

from gateway.answer import Answer, Headers
from gateway.edge.request import EdgeRequest, too_large
from gateway.errors import Problem, problem_body, problem_headers

_SECURITY = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# API answers are data, never pages: nothing in them may load or run anything.
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_NO_STORE = (b"cache-control", b"no-store")


class EdgeHeaders:
    """The headers the edge adds to every answer. `hsts` when served over HTTPS."""

    def __init__(self, *, hsts: bool) -> None:
        self._extra = [(b"strict-transport-security", b"max-age=31536000")] if hsts else []

    def finish(self, headers: Headers, *, request_id: str, limit: Headers, docs: bool) -> Headers:
        """`headers` with the edge's own added. Answers that say nothing about caching get
        `no-store`, so private data is never kept by a shared cache on the way."""
        names = {name for name, _ in headers}
        out = [*headers, (b"x-request-id", request_id.encode()), *limit]
        out.extend(h for h in _SECURITY if h[0] not in names)
        out.extend(self._extra)
        if not docs and b"content-security-policy" not in names:
            out.append(_API_CSP)
        if b"cache-control" not in names:
            out.append(_NO_STORE)
        return out


def problem_answer(problem: Problem, *, instance: str, request_id: str) -> Answer:
    body = problem_body(problem, instance=instance, request_id=request_id)
    return Answer(problem.status, problem_headers(problem, body), body)


async def send_answer(send: Send, answer: Answer, headers: Headers, *, head: bool) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})


class Streamed:
    """A `send` for FastAPI's own answers: adds the edge's headers to the start and notes the
    status and the bytes sent (for the access log)."""

    def __init__(self, send: Send, finish: Callable[[Headers], Headers], *, head: bool) -> None:
        self._send = send
        self._finish = finish
        self._head = head
        self.status = 500
        self.sent = 0
        self.started = False
        self.finished = False  # the answer's last body message went out

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            message = {**message, "headers": self._finish(list(message.get("headers", ())))}
        elif message["type"] == "http.response.body":
            if self._head:
                message = {**message, "body": b""}
            self.sent += len(message.get("body", b""))
        await self._send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True


class BodyError(Exception):
    """The body could not be read whole: too large (413) or too slow (408)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


async def read_body(receive: Receive, *, limit: int, timeout: float) -> bytes:
    """The whole body, refusing one over `limit` bytes (however it is framed) or one that does
    not arrive within `timeout` seconds. A client gone meanwhile ends the read early."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BodyError(too_large(limit))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyError(Problem(408, f"the request body did not arrive within {timeout:g} s",
                                code="REQUEST_TIMEOUT")) from None
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` once, then the server's own messages (a disconnect)."""
    given = False

    async def receive_again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def for_fastapi(scope: Scope, request: EdgeRequest) -> Scope:
    """The scope FastAPI routes: the path without its trailing slash, HEAD served as GET (the
    pipeline drops the body)."""
    if request.path == scope["path"] and request.method != "HEAD":
        return scope
    return {**scope, "path": request.path, "raw_path": request.path.encode(),
            "method": "GET" if request.method == "HEAD" else request.method}


class Capture:
    """A `send` that keeps FastAPI's answer whole (for the cache)."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: Headers = []
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, b"".join(self.chunks))

