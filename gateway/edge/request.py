"""A request as the edge reads it, parsed once (one pass over its headers), and the guards that
refuse it before any work: sizes of the head and body, the body's media type.

The guards decide; they do not answer. Their refusal is sent after the rate limiter has taken a
token, so hostile requests are limited (and carry RateLimit headers) like any other.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from starlette.types import Scope

from gateway.errors import Problem

# The headers the edge itself reads; the rest pass to FastAPI untouched.
_SINGLE = frozenset({b"x-request-id", b"authorization", b"content-length", b"content-type",
                     b"transfer-encoding"})
# Headers that may come several times and then form one comma-separated list (RFC 9110 5.3).
_LISTS = frozenset({b"cache-control", b"pragma", b"if-none-match", b"x-forwarded-for"})
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_WRITES = frozenset({"POST", "PUT", "PATCH"})
# The scope extension the server protocol (gateway/edge/protocol.py) sets on a head it cut
# short; its value is the status to answer (431, 414; 400 for an upgrade with a body).
REFUSAL = "portico.head_refusal"


@dataclass(slots=True)
class EdgeRequest:
    """The parts of a request the edge steps read."""

    method: str
    path: str              # without its trailing slash
    query: bytes
    peer: str | None
    request_id: str
    headers: dict[bytes, str] = field(default_factory=dict)
    lists: dict[bytes, list[str]] = field(default_factory=dict)
    header_bytes: int = 0
    target_bytes: int = 0
    head_refusal: int | None = None

    @classmethod
    def parse(cls, scope: Scope) -> EdgeRequest:
        headers: dict[bytes, str] = {}
        lists: dict[bytes, list[str]] = {}
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name in _SINGLE:
                headers.setdefault(name, value.decode("latin-1"))
            elif name in _LISTS:
                lists.setdefault(name, []).append(value.decode("latin-1"))
        given = headers.get(b"x-request-id")
        request_id = given if given and _REQUEST_ID.fullmatch(given.encode("latin-1")) \
            else os.urandom(16).hex()
        raw_path = scope.get("raw_path") or scope["path"].encode("latin-1", "replace")
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        client = scope.get("client")
        return cls(method=scope["method"], path=path, query=scope.get("query_string", b""),
                   peer=client[0] if client else None, request_id=request_id,
                   headers=headers, lists=lists, header_bytes=size,
                   target_bytes=len(raw_path) + len(scope.get("query_string", b"")),
                   head_refusal=(scope.get("extensions") or {}).get(REFUSAL))

    def joined(self, name: bytes) -> str | None:
        """A list header's values as one comma-separated value, or None when absent."""
        values = self.lists.get(name)
        return ", ".join(values) if values else None

    @property
    def has_body(self) -> bool:
        length = self.headers.get(b"content-length")
        if length is not None:
            return length != "0"
        return b"transfer-encoding" in self.headers


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may be: a head of at most `max_header_bytes` of headers and a target of
    `max_target_bytes`, a body of `max_body_bytes`."""

    max_header_bytes: int
    max_target_bytes: int
    max_body_bytes: int

    def check(self, request: EdgeRequest) -> Problem | None:
        """The first guard the request fails, or None."""
        if request.head_refusal == 414 or request.target_bytes > self.max_target_bytes:
            return Problem(414, f"the request target is longer than {self.max_target_bytes} "
                                "bytes", code="URI_TOO_LONG")
        if request.head_refusal == 431 or request.header_bytes > self.max_header_bytes:
            return Problem(431, f"the request's headers are larger than "
                                f"{self.max_header_bytes} bytes", code="HEADERS_TOO_LARGE")
        if request.head_refusal == 400:
            return Problem(400, "a request asking for a protocol upgrade cannot carry a body: "
                                "this server offers no upgrade", code="BAD_REQUEST")
        length = request.headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or len(length) > 18:
                return Problem(400, "Content-Length is not a number", code="BAD_REQUEST")
            if int(length) > self.max_body_bytes:
                return too_large(self.max_body_bytes)
        if request.method in _WRITES and request.has_body:
            media = (request.headers.get(b"content-type") or "").split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                return Problem(415, "send the body as JSON with Content-Type: application/json",
                               code="UNSUPPORTED_MEDIA_TYPE",
                               headers={"Accept": "application/json"})
        return None


def too_large(limit: int) -> Problem:
    return Problem(413, f"the request body is larger than {limit} bytes", code="BODY_TOO_LARGE")
