"""Calls from the Order service to the User and Product services.

The stubs run over services.common.clients channels (grpc round_robin over every instance,
UNAVAILABLE retried by the channel's retryPolicy). Calls made while serving a request carry the
caller's remaining deadline and request id; compensating calls (release, refund, commit) get a
fresh deadline of their own, because they must happen even when the caller has given up.
Upstream failures become ServiceErrors: NOT_FOUND and FAILED_PRECONDITION keep their reason,
metadata and resource; UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED become Unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

import grpc

from portico.product.v1 import product_pb2, product_pb2_grpc
from portico.user.v1 import user_pb2, user_pb2_grpc
from services.common.clients import outgoing
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ServiceError,
    Unauthenticated,
    Unavailable,
    details_of,
)
from services.order.models import ReservedLine

USER_SERVICE = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
PRODUCT_SERVICE = product_pb2.DESCRIPTOR.services_by_name["ProductService"].full_name

_PASSED_ON = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    # The end user's token travels on: its refusal (revoked meanwhile, say) is the caller's.
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}
_UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED)


class UserDirectory:
    """Asks the User service whether a customer exists."""

    def __init__(self, stub: user_pb2_grpc.UserServiceStub, *, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def ensure_exists(self, customer: str, *, context=None) -> None:
        """NotFound (resource user, field customer) unless the user exists."""
        try:
            await self._stub.GetUser(user_pb2.GetUserRequest(id=customer),
                                     **outgoing(context, self._timeout))
        except grpc.aio.AioRpcError as error:
            # A malformed id names no user either: both are "no such customer".
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotFound(f"customer {customer} does not exist",
                               resource=("user", customer),
                               violations=[("customer", "no such user")]) from error
            raise upstream_error(error, "user") from error


class StockKeeper:
    """Reserves, releases and commits stock through the Product service."""

    def __init__(self, stub: product_pb2_grpc.ProductServiceStub, *, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def reserve(self, reservation_id: str, items: Sequence[tuple[str, int]], *,
                      context=None) -> list[ReservedLine]:
        """Takes every line or none (ReserveStock is all or none and idempotent)."""
        request = product_pb2.ReserveStockRequest(reservation_id=reservation_id, items=[
            product_pb2.StockItem(product_id=product_id, quantity=quantity)
            for product_id, quantity in items
        ])
        try:
            response = await self._stub.ReserveStock(request, **outgoing(context, self._timeout))
        except grpc.aio.AioRpcError as error:
            raise upstream_error(error, "product") from error
        return [_reserved_line(item) for item in response.items]

    async def release(self, reservation_id: str) -> bool:
        """Gives the reservation's stock back; False when there was nothing (left) to give."""
        try:
            response = await self._stub.ReleaseStock(
                product_pb2.ReleaseStockRequest(reservation_id=reservation_id),
                **outgoing(None, self._timeout))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False  # nothing was ever reserved under this id
            raise upstream_error(error, "product") from error
        return response.released

    async def commit(self, reservation_id: str) -> None:
        """Makes the reservation final (the goods left)."""
        try:
            await self._stub.CommitStock(
                product_pb2.CommitStockRequest(reservation_id=reservation_id),
                **outgoing(None, self._timeout))
        except grpc.aio.AioRpcError as error:
            raise upstream_error(error, "product") from error


def _reserved_line(item: product_pb2.ReservedItem) -> ReservedLine:
    try:
        price = Decimal(item.unit_price)
    except InvalidOperation as error:
        raise ServiceError(f"product {item.product_id} has an unreadable price") from error
    return ReservedLine(product_id=item.product_id, name=item.name, quantity=item.quantity,
                        unit_price=price)


def upstream_error(error: grpc.aio.AioRpcError, service: str) -> ServiceError:
    """The ServiceError to answer with when a call to `service` failed."""
    code = error.code()
    if code in _UNAVAILABLE:
        return Unavailable(f"the {service} service is unavailable",
                           reason="UPSTREAM_UNAVAILABLE", metadata={"service": service})
    kind = _PASSED_ON.get(code)
    if kind is None:
        return ServiceError(f"the {service} service failed")
    rich = details_of(error)
    return kind(error.details() or f"the {service} service refused the call",
                reason=rich.reason, metadata=rich.metadata, resource=rich.resource,
                violations=rich.violations)
