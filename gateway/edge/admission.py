"""Load shedding: how many requests one gateway process serves at once, and the answer beyond.

Past `limit` requests in flight, a request is answered 503 with `Retry-After` at once, by the
server protocol itself (gateway/edge/protocol.py): no task, no Redis, no upstream. A client that
does not wait before asking again (many do not) would otherwise keep the process busy shedding,
starving the requests it admitted: so the connection that got the 503 is not read again for
`pause` seconds (Retry-After's: a client that heeds it never notices). Its next request is then
answered like any other. Probes and scrapes are never shed: an overloaded
gateway must still say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from http import HTTPStatus

import orjson

from gateway import metrics
from gateway.edge.respond import EdgeHeaders
from gateway.errors import Problem, problem_body, problem_headers

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class Admission:
    """The in-flight count of one process against its `limit` (each process has its own)."""

    limit: int
    retry_after: int = 1
    pause: float = 1.0
    in_flight: int = 0
    hsts: bool = False

    def __post_init__(self) -> None:
        if self.limit < 1 or self.retry_after < 1 or not 0 <= self.pause <= self.retry_after:
            raise ValueError("limit and retry_after must be at least 1, pause within 0 and "
                             "retry_after")
        # The answer is the same for every shed request but for its id and path: made once.
        problem = Problem(503, "the gateway is at capacity; try again shortly",
                          code="OVERLOADED", headers={"Retry-After": str(self.retry_after)})
        marker = "\x00"
        body = problem_body(problem, instance=marker, request_id=marker)
        self._body = body.split(orjson.dumps(marker))  # [before instance, before id, after]
        headers = EdgeHeaders(hsts=self.hsts).finish(
            [h for h in problem_headers(problem, body) if h[0] != b"content-length"],
            request_id=marker, limit=[], docs=False)
        head = [b"HTTP/1.1 503 %s\r\n" % HTTPStatus(503).phrase.encode()]
        head += [b"%s: %s\r\n" % (name, value) for name, value in headers]
        self._head = b"".join(head).split(marker.encode())  # [before id, after id]

    def admits(self, path: str) -> bool:
        return self.in_flight < self.limit or path in EXEMPT

    def answer(self, path: str, *, keep_alive: bool) -> bytes:
        """The whole HTTP/1.1 answer of a shed request, as the pipeline would write it."""
        request_id = os.urandom(16).hex().encode()
        before_instance, before_id, after_id = self._body
        body = b"".join((before_instance, orjson.dumps(path[:256]), before_id, b'"',
                         request_id, b'"', after_id))
        metrics.child(metrics.REQUESTS, "shed", "other", "503").inc()
        close = b"" if keep_alive else b"connection: close\r\n"
        return b"".join((self._head[0], request_id, self._head[1], close,
                         b"content-length: %d\r\n\r\n" % len(body), body))
