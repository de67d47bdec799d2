"""Helpers of the Product service tests: unique ids, small set-ups, decoded failures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import grpc
import pytest

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.errors import details_of


def unique(prefix: str = "P") -> str:
    """An id no other test uses (tests of a module share one database)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def make_product(stub: product_pb2_grpc.ProductServiceStub, *, stock: int = 10,
                       price: str = "19.99", name: str = "Widget",
                       product_id: str | None = None) -> product_pb2.Product:
    response = await stub.CreateProduct(product_pb2.CreateProductRequest(
        id=product_id or unique(), name=name, price=price, stock=stock))
    return response.product


async def stock_of(stub: product_pb2_grpc.ProductServiceStub, product_id: str) -> int:
    return (await stub.GetProduct(product_pb2.GetProductRequest(id=product_id))).product.stock


@dataclass
class Failure:
    """A failed call's code and its google.rpc details, decoded."""

    code: grpc.StatusCode
    fields: dict[str, str]
    reason: str | None
    metadata: dict[str, str]
    resource: tuple[str, str] | None


def failure(error: grpc.aio.AioRpcError) -> Failure:
    rich = details_of(error)
    return Failure(error.code(), dict(rich.violations), rich.reason, rich.metadata,
                   rich.resource)


async def call_fails(call) -> Failure:
    """Awaits a stub call that must fail, and decodes its failure."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return failure(caught.value)
