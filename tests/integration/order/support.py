"""Helpers of the Order service tests: seeding through the other services' stubs, decoded
failures, and looks behind the service's back at its tables."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from portico.order.v1 import order_pb2, order_pb2_grpc
from portico.product.v1 import product_pb2, product_pb2_grpc
from portico.user.v1 import user_pb2, user_pb2_grpc
from services.common.server import RunningServer
from services.common.settings import ServiceSettings
from tests.trust import channel, mint, tls_for


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Failure:
    """A failed call's code and its google.rpc details, decoded."""

    code: grpc.StatusCode
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    resource: tuple[str, str] | None = None


def failure(error: grpc.aio.AioRpcError) -> Failure:
    decoded = Failure(error.code(), error.details())
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            decoded.fields.update({v.field: v.description for v in bad.field_violations})
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            decoded.reason, decoded.metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            decoded.resource = (info.resource_type, info.resource_name)
    return decoded


@dataclass
class Stack:
    """A User server, two Product servers and an Order server, with stubs (as an admin service
    account) and the database; `as_customer` gives a customer's own stub."""

    settings: ServiceSettings
    orders: order_pb2_grpc.OrderServiceStub
    users: user_pb2_grpc.UserServiceStub
    products: product_pb2_grpc.ProductServiceStub
    engine: AsyncEngine
    product_servers: list[RunningServer] = field(default_factory=list)
    order_address: str = ""
    _customers: dict[str, tuple[grpc.aio.Channel, order_pb2_grpc.OrderServiceStub]] = \
        field(default_factory=dict)

    async def customer(self) -> str:
        """A new user's id."""
        response = await self.users.CreateUser(user_pb2.CreateUserRequest(
            name="Test Customer", email=f"{unique('c')}@example.com", password="s3cret-pass"))
        return response.user.id

    def token(self, customer: str, role: str = "customer") -> str:
        """An access token of `customer`, as the user service would issue it."""
        return mint(self.settings.state_dir, customer, role)

    def as_customer(self, customer: str) -> order_pb2_grpc.OrderServiceStub:
        """The order service as `customer` calls it (through the gateway's identity)."""
        if customer not in self._customers:
            opened = channel(self.order_address, tls_for(self.settings.state_dir, "gateway"),
                             token=self.token(customer))
            self._customers[customer] = (opened, order_pb2_grpc.OrderServiceStub(opened))
        return self._customers[customer][1]

    async def close(self) -> None:
        for opened, _ in self._customers.values():
            await opened.close()

    async def product(self, *, price: str = "1.00", stock: int = 10) -> str:
        """A new product's id."""
        response = await self.products.CreateProduct(product_pb2.CreateProductRequest(
            id=unique("P"), name=f"Widget at {price}", price=price, stock=stock))
        return response.product.id

    async def stock(self, product_id: str) -> int:
        request = product_pb2.GetProductRequest(id=product_id)
        return (await self.products.GetProduct(request)).product.stock

    async def place(self, customer: str, items: list[tuple[str, int]], *,
                    token: str = "tok_visa", key: str = "", **fields) -> order_pb2.Order:
        response = await self.as_customer(customer).CreateOrder(create_request(
            customer, items, token=token, key=key, **fields))
        return response.order

    async def charges(self, customer: str) -> dict[str, int]:
        """{status: count} of the simulated processor's charges for a customer's orders."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(text(
                "SELECT p.status, count(*) FROM simulated_payments p "
                "JOIN orders o ON o.id = p.order_id WHERE o.customer = :customer "
                "GROUP BY p.status"), {"customer": customer})
            return {status: count for status, count in rows}

    async def order_rows(self, customer: str) -> list[dict]:
        """Every row of a customer's orders, deleted and failed ones included."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(text(
                "SELECT id, status, deleted_at, settled_at, idempotency_key, failure "
                "FROM orders WHERE customer = :customer ORDER BY created_at"),
                {"customer": customer})
            return [dict(row._mapping) for row in rows]


def create_request(customer: str, items: list[tuple[str, int]], *, token: str = "tok_visa",
                   key: str = "", **fields) -> order_pb2.CreateOrderRequest:
    return order_pb2.CreateOrderRequest(
        customer=customer, idempotency_key=key, payment=order_pb2.Payment(token=token),
        items=[order_pb2.OrderItemInput(product_id=p, quantity=q) for p, q in items], **fields)
