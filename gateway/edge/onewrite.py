"""uvicorn's request-response cycle, with an answer written in one piece.

uvicorn writes an answer's head (status line and headers) as soon as the app sends it, and its
body when that comes: two writes, so two send(2) calls, for every answer, although nearly all
of the edge's answers (every one the pipeline makes, most of FastAPI's) come whole, the body in
the message right after the head. Here the head is held until that message and written with
it. And where uvicorn searches each header name and value with a regular expression, two
searches per header (an edge answer has about fifteen), all names are searched at once and all
values at once, for the same characters.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)


# A larger body goes out on its own after the head: joining them would copy it, for one
# write saved among the many the kernel needs for it anyway.
MAX_JOINED_BODY = 64 * 1024


class OneWriteCycle(RequestResponseCycle):
    """RequestResponseCycle whose `send` holds an answer's head for its first body message
    (or writes it alone when that body is not the plain, whole kind: chunked, a HEAD's, one
    over MAX_JOINED_BODY)."""

    _head: bytes | None = None

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started or self.disconnected or self.access_log \
                    or self.flow.write_paused:
                await RequestResponseCycle.send(self, message)
            else:
                self._head = self._start(message)
            return
        head = self._head
        if head is None:
            await RequestResponseCycle.send(self, message)
            return
        self._head = None
        body = message.get("body", b"")
        if kind != "http.response.body" or self.chunked_encoding or self.disconnected \
                or self.scope["method"] == "HEAD" or self.flow.write_paused \
                or len(body) > MAX_JOINED_BODY:
            if not self.disconnected:
                self.transport.write(head)
            await RequestResponseCycle.send(self, message)
            return
        if len(body) > self.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        self.expected_content_length -= len(body)
        self.transport.write(head + body)
        if not message.get("more_body", False):
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _start(self, message: Any) -> bytes:
        """What uvicorn's `send` does with a start message (its access log aside: this cycle
        is not used with it on), but the head is returned rather than written."""
        self.response_started = True
        self.waiting_for_100_continue = False
        status = message["status"]
        headers = self.default_headers + list(message.get("headers", []))
        if HEADER_RE.search(b"-".join([name for name, _ in headers])):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"\t".join([value for _, value in headers])):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status]]
        closing = False
        for name, value in headers:
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection":
                if b"close" in [token.lower().strip() for token in value.split(b",")]:
                    self.keep_alive = False
                    closing = True
            content.extend((name, b": ", value, b"\r\n"))
        if not self.keep_alive and not closing:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" \
                and status not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return b"".join(content)
