"""Domain errors raised by servicers and stores, and their one mapping to gRPC statuses.

Servicers raise these; the interceptor turns them into a status with `google.rpc` details, so no
servicer ever builds a status by hand and no domain failure surfaces as UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations)
        self.resource = resource
        self.retry_after = retry_after

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
        if self.retry_after is not None:
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromMilliseconds(max(0, round(self.retry_after * 1000)))
            details.append(_pack(retry))
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


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


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


@dataclass(frozen=True)
class RichDetails:
    """The google.rpc details of a failed call, decoded: the inverse of ServiceError.to_status."""

    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    resource: tuple[str, str] | None = None
    violations: list[tuple[str, str]] = field(default_factory=list)
    retry_after: float | None = None


def details_of(error: grpc.RpcError) -> RichDetails:
    """Decodes the `grpc-status-details-bin` trailer of a failed call (empty when absent or
    unreadable)."""
    trailers = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) \
        else None
    raw = next((value for key, value in trailers or () if key == "grpc-status-details-bin"), None)
    if raw is None:
        return RichDetails()
    try:
        status = status_pb2.Status.FromString(raw)
    except Exception:  # a peer's garbage must not turn an error into a crash
        return RichDetails()
    found: dict = {}
    for packed in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.ResourceInfo,
                     error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                found[kind] = message
    info = found.get(error_details_pb2.ErrorInfo)
    resource = found.get(error_details_pb2.ResourceInfo)
    bad = found.get(error_details_pb2.BadRequest)
    retry = found.get(error_details_pb2.RetryInfo)
    return RichDetails(
        reason=info.reason if info else None,
        metadata=dict(info.metadata) if info else {},
        resource=(resource.resource_type, resource.resource_name) if resource else None,
        violations=[(v.field, v.description) for v in bad.field_violations] if bad else [],
        retry_after=retry.retry_delay.ToTimedelta().total_seconds() if retry else None)


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_CODES = {code: getattr(code_pb2, code.name) for code in grpc.StatusCode}
