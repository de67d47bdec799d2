"""Answers the server protocol (gateway/edge/protocol.py) writes itself, without the app: a shed
request's 503 (gateway/edge/admission.py), an unparsable request's 400. Each is made once, with
the headers and problem body the pipeline would write; only the request id and the path (the
problem's instance) change from one answer to the next."""

from __future__ import annotations

import os
from functools import cache
from http import HTTPStatus

import orjson

from gateway.edge.respond import EdgeHeaders
from gateway.errors import Problem, problem_body, problem_headers

# The paths of problem instances, as in the access log.
MAX_INSTANCE = 256


class CannedAnswer:
    """The whole HTTP/1.1 answer to `problem`, but for its request id and instance."""

    def __init__(self, problem: Problem, *, hsts: bool) -> None:
        marker = "\x00"
        body = problem_body(problem, instance=marker, request_id=marker)
        self._body = body.split(orjson.dumps(marker))  # [before instance, before id, after]
        headers = EdgeHeaders(hsts=hsts).finish(
            [h for h in problem_headers(problem, body) if h[0] != b"content-length"],
            request_id=marker, limit=[], docs=False)
        status = problem.status
        head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
        head += [b"%s: %s\r\n" % (name, value) for name, value in headers]
        self._head = b"".join(head).split(marker.encode())  # [before id, after id]

    def render(self, path: str, *, keep_alive: bool) -> bytes:
        request_id = os.urandom(16).hex().encode()
        before_instance, before_id, after_id = self._body
        body = b"".join((before_instance, orjson.dumps(path[:MAX_INSTANCE]), before_id, b'"',
                         request_id, b'"', after_id))
        close = b"" if keep_alive else b"connection: close\r\n"
        return b"".join((self._head[0], request_id, self._head[1], close,
                         b"content-length: %d\r\n\r\n" % len(body), body))


@cache  # two at most: with HSTS and without
def unparsable(*, hsts: bool) -> CannedAnswer:
    """The answer to bytes that do not parse as an HTTP/1.1 request."""
    return CannedAnswer(Problem(400, "the request is not valid HTTP/1.1",
                                code="MALFORMED_REQUEST"), hsts=hsts)
