"""Domain errors raised by servicers and stores, and their one mapping to gRPC statuses.

Servicers raise these; the interceptor turns them into a status with `google.rpc` details, so no
servicer ever builds a status by hand and no domain failure surfaces as UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "portico"


class ServiceError(Exception):
    """A failure the caller should see, with a status code and optional google.rpc details."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[tuple[str, str]] = (),
        resource: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations)
        self.resource = resource

    def to_status(self) -> status_pb2.Status:
        """The google.rpc.Status of this error, details packed as Any."""
        details: list[any_pb2.Any] = []
        if self.violations:
            details.append(_pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in self.violations
            ])))
        if self.reason:
            details.append(_pack(error_details_pb2.ErrorInfo(
                reason=self.reason, domain=DOMAIN, metadata=self.metadata)))
        if self.resource:
            kind, name = self.resource
            details.append(_pack(error_details_pb2.ResourceInfo(
                resource_type=kind, resource_name=name)))
        return status_pb2.Status(code=_CODES[self.code], message=self.message, details=details)


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Violations:
    """Collects field violations so that one call reports every bad field at once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def check(self, ok: bool, field: str, message: str) -> None:
        if not ok:
            self.add(field, message)

    def raise_if_any(self, message: str = "the request has invalid fields") -> None:
        if self.items:
            raise InvalidArgument(message, violations=self.items)


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_CODES = {code: getattr(code_pb2, code.name) for code in grpc.StatusCode}
