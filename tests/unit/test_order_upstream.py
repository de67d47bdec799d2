"""How errors of the User and Product services become the Order service's answers."""

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common.errors import FailedPrecondition, NotFound, ServiceError, Unavailable
from services.order.upstream import upstream_error


def rpc_error(code: grpc.StatusCode, message: str, *details) -> grpc.aio.AioRpcError:
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message,
                               details=packed)
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=message)


def test_out_of_stock_keeps_reason_and_product():
    error = upstream_error(rpc_error(
        grpc.StatusCode.FAILED_PRECONDITION, "not enough stock of product P1",
        error_details_pb2.ErrorInfo(reason="OUT_OF_STOCK", domain="portico",
                                    metadata={"product_id": "P1"})), "product")
    assert type(error) is FailedPrecondition
    assert (error.reason, error.metadata["product_id"]) == ("OUT_OF_STOCK", "P1")
    assert error.message == "not enough stock of product P1"


def test_unknown_product_keeps_its_resource():
    error = upstream_error(rpc_error(
        grpc.StatusCode.NOT_FOUND, "product P9 not found",
        error_details_pb2.ResourceInfo(resource_type="product", resource_name="P9")), "product")
    assert type(error) is NotFound and error.resource == ("product", "P9")


def test_unreachable_or_slow_upstreams_are_unavailable():
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        error = upstream_error(rpc_error(code, "gone"), "user")
        assert type(error) is Unavailable
        assert error.reason == "UPSTREAM_UNAVAILABLE" and error.metadata == {"service": "user"}


def test_anything_else_is_an_internal_error_without_upstream_text():
    error = upstream_error(rpc_error(grpc.StatusCode.INTERNAL, "stack trace"), "product")
    assert type(error) is ServiceError and error.code == grpc.StatusCode.INTERNAL
    assert "stack trace" not in error.message
