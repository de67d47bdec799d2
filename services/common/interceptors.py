"""The one server interceptor: request id into every log line, the caller admitted (caller
rules on its certificate, its access token checked), domain errors into statuses."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from services.common.admission import Admission, reset_caller, set_caller
from services.common.callers import OPEN_SERVICES
from services.common.errors import ServiceError
from services.common.logs import request_id_var

log = logging.getLogger("portico.rpc")

REQUEST_ID_KEY = "x-request-id"
# Health checks and reflection come from machines (balancers, probes, grpcurl): their lines
# log at DEBUG, so that INFO shows the calls that do the work.
ROUTINE_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class RequestContextInterceptor(grpc.aio.ServerInterceptor):
    """Runs every unary call with its request id and its admitted caller set, logs it, and maps
    its errors in one place.

    A ServiceError becomes its status with google.rpc details; any other exception becomes
    INTERNAL with a generic message (the traceback goes to the log, never to the caller).
    Streaming methods are served only for the open services (health Watch, reflection): the
    services' own methods are all unary, and a streaming one would bypass admission.
    """

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        # One wrapped handler per method, made on its first call: the wrapping is the same
        # for every call, so building it per call would only cost time on the hot path.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        if handler.unary_unary is None:
            return handler if details.method.split("/")[1] in OPEN_SERVICES else None
        known = self._wrapped.get(details.method)
        if known is None or known[0] is not handler:
            known = (handler, _wrap(handler, details.method, self._admission))
            self._wrapped[details.method] = known
        return known[1]


def _wrap(handler: grpc.RpcMethodHandler, method: str,
          admission: Admission) -> grpc.RpcMethodHandler:
    inner = handler.unary_unary
    level = logging.DEBUG if method.startswith(ROUTINE_PREFIXES) else logging.INFO

    async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = request_id_var.set(_request_id(context.invocation_metadata()))
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        admitted = None
        try:
            admitted = set_caller(await admission.admit(method, context))
            return await inner(request, context)
        except ServiceError as error:
            code = error.code
            status = rpc_status.to_status(error.to_status())
            await context.abort(status.code, status.details, status.trailing_metadata)
        except (grpc.aio.AbortError, grpc.RpcError):
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            if log.isEnabledFor(level):
                log.log(level, "rpc", extra={
                    "method": method,
                    "code": getattr(code, "name", str(code)),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                })
            if admitted is not None:
                reset_caller(admitted)
            request_id_var.reset(token)

    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _request_id(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and 0 < len(value) <= 200:
            return value
    return uuid.uuid4().hex
