"""Every error the edge answers, in one place: the gRPC -> HTTP status table, RFC 9457
problem+json bodies, google.rpc details carried into them, and the exception handlers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import grpc
import orjson

from services.common.errors import details_of

log = logging.getLogger("portico.gateway.errors")

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "urn:portico:problem:"

# The one gRPC -> HTTP table (the README lists it).
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# google.rpc.ErrorInfo reasons that say more than their status code.
REASON_TO_HTTP: dict[str, int] = {
    "PAYMENT_DECLINED": 402,
    "OUT_OF_STOCK": 409,
    "IDEMPOTENCY_KEY_REUSED": 409,
}

# What a caller may learn from a failure of ours: never the upstream's own words.
_OPAQUE = {500, 501, 502, 503, 504}


class Problem(Exception):
    """An error answer of the edge itself (not from an upstream)."""

    def __init__(self, status: int, detail: str, *, title: str | None = None,
                 errors: list[dict[str, str]] | None = None,
                 headers: Mapping[str, str] | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _phrase(status)
        self.errors = errors
        self.headers = dict(headers or {})
        self.code = code


def problem_body(problem: Problem, *, instance: str, request_id: str) -> bytes:
    body: dict[str, Any] = {
        "type": TYPE_BASE + problem.code.lower().replace("_", "-") if problem.code
        else "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
        "request_id": request_id,
    }
    if problem.code:
        body["code"] = problem.code
    if problem.errors:
        body["errors"] = problem.errors
    return orjson.dumps(body)


def problem_headers(problem: Problem, body: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", PROBLEM_TYPE.encode()),
               (b"content-length", str(len(body)).encode())]
    extra = {k.lower(): v for k, v in problem.headers.items()}
    if problem.status == 401:
        extra.setdefault("www-authenticate", 'Bearer realm="portico"')
    headers.extend((k.encode(), v.encode()) for k, v in extra.items())
    return headers


def from_rpc_error(error: grpc.RpcError) -> Problem:
    """The problem for a failed upstream call, with its google.rpc details."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    status = GRPC_TO_HTTP.get(code, 500)
    detail = error.details() if callable(getattr(error, "details", None)) else None
    rich = details_of(error)
    headers: dict[str, str] = {}
    if rich.reason:
        status = REASON_TO_HTTP.get(rich.reason, status)
    if rich.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(rich.retry_after)))
    if status in _OPAQUE:
        detail = _OPAQUE_DETAIL.get(status, "the service failed to answer")
        if status in (503, 504):
            headers.setdefault("Retry-After", "1")
    errors = [{"field": f, "message": m} for f, m in rich.violations]
    return Problem(status, detail or _phrase(status), errors=errors or None,
                   headers=headers, code=rich.reason or code.name)


def _phrase(status: int) -> str:
    if status == 499:
        return "Client Closed Request"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_OPAQUE_DETAIL = {
    503: "the service is unavailable; try again shortly",
    504: "the service did not answer in time",
}


def problem_response(problem: Problem, *, instance: str, request_id: str):
    """The problem as a Starlette response (for exception handlers)."""
    from starlette.responses import Response

    body = problem_body(problem, instance=instance, request_id=request_id)
    response = Response(body, status_code=problem.status)
    response.raw_headers = problem_headers(problem, body)
    return response


def request_problem(request, problem: Problem):
    """The problem as the answer to `request` (a Starlette Request, with the edge's context)."""
    context = request.scope.get("state", {}).get("edge")
    return problem_response(problem, instance=request.scope["path"][:256],
                            request_id=context.request_id if context is not None else "-")


def install_handlers(app) -> None:
    """Every exception that reaches the app becomes problem+json; none becomes a bare 500."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def on_problem(request, error: Problem):
        drop_tracebacks(error)
        return request_problem(request, error)

    async def on_validation(request, error: RequestValidationError):
        drop_tracebacks(error)
        return request_problem(request, validation_problem(error.errors()))

    async def on_http(request, error: HTTPException):
        drop_tracebacks(error)
        if error.status_code == 400 and isinstance(error.__cause__, (ValueError, RecursionError)):
            return request_problem(request, unreadable_json(error.__cause__))
        detail = error.detail if isinstance(error.detail, str) else _phrase(error.status_code)
        if error.status_code == 404:
            detail = f"there is no {request.scope['path'][:256]}"
        return request_problem(request, Problem(error.status_code, detail,
                                                headers=dict(error.headers or {})))

    async def on_crash(request, error: Exception):
        return request_problem(request, crashed(request.scope["path"]))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)


def drop_tracebacks(error: BaseException | None) -> None:
    """Forgets the tracebacks of an exception answered as a problem, and of what caused it:
    they hold the frames that raised it, which may hold it in turn (FastAPI keeps the
    RequestValidationError of a body that is not JSON in a local; the pipeline keeps a 401 as
    its refusal), a reference cycle per request left to the garbage collector."""
    for _ in range(8):  # a chain is a cause or two long; a loop in it must not hang here
        if error is None:
            return
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


def crashed(path: str) -> Problem:
    """Logs the exception being handled (a bug of the gateway's) and answers it: a 500 that
    tells the client nothing of it."""
    log.exception("unhandled error", extra={"path": path[:256]})
    return Problem(500, "the gateway failed to answer", code="INTERNAL")


def unreadable_json(cause: BaseException) -> Problem:
    """What FastAPI's bare 400 ("There was an error parsing the body") stands for: a body the
    json module could not decode for a reason other than its syntax."""
    if isinstance(cause, UnicodeDecodeError):
        reason = "it is not UTF-8"
    elif isinstance(cause, RecursionError):
        reason = "it nests too deep"
    else:  # the only other ValueError: an integer past the conversion limit
        reason = f"a number in it has more than {sys.get_int_max_str_digits()} digits"
    return Problem(400, f"the body is not valid JSON: {reason}", code="MALFORMED_JSON")


def validation_problem(issues: Iterable[Mapping[str, Any]]) -> Problem:
    """A 400 listing each bad field (a body that is not JSON at all is one problem)."""
    issues = list(issues)
    if any(issue.get("type") == "json_invalid" for issue in issues):
        return Problem(400, "the body is not valid JSON", code="MALFORMED_JSON")
    errors = []
    for issue in issues:
        loc = [str(part) for part in issue.get("loc", ()) if part not in ("body",)]
        if loc and loc[0] in ("query", "path", "header"):
            loc = loc[1:]
        errors.append({"field": ".".join(loc) or "body", "message": str(issue.get("msg", ""))})
    return Problem(400, "the request has invalid fields", errors=errors,
                   code="INVALID_ARGUMENT")
