"""/orders and the Order service. The customer of an order is always the caller's token subject;
customers see and change only their own orders (others' answer 404, as if they did not exist)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query, Request
from pydantic import BaseModel, Field, StringConstraints

from gateway.routes.dispatch import Dispatcher
from gateway.routes.schemas import STRICT, Cursor, Id, Limit, PathId, add, by_id, without_none
from gateway.routes.table import Access, AdminOnly, Route
from portico.order.v1 import order_pb2 as pb
from portico.order.v1 import order_pb2_grpc as grpc_pb

Stub = grpc_pb.OrderServiceStub
SHIPPING_IS_ADMINS = AdminOnly("status", "only an admin may ship or deliver an order",
                              values=frozenset({"shipped", "delivered"}))
LIST = Route("GET", "/orders", "order", Stub, "ListOrders", pb.ListOrdersRequest,
             Access.SIGNED_IN, idempotent=True, read=True, list_field="orders",
             customer_field="customer")
GET = Route("GET", "/orders/{id}", "order", Stub, "GetOrder", pb.GetOrderRequest,
            Access.OWNER_OR_ADMIN, idempotent=True, read=True, response_field="order",
            customer_field="customer")
CREATE = Route("POST", "/orders", "order", Stub, "CreateOrder", pb.CreateOrderRequest,
               Access.SIGNED_IN, status=201, response_field="order", location="/orders/{id}",
               customer_field="customer", customer_is_caller=True)
UPDATE = Route("PUT", "/orders/{id}", "order", Stub, "UpdateOrder", pb.UpdateOrderRequest,
               Access.OWNER_OR_ADMIN, idempotent=True, response_field="order",
               customer_field="customer", admin_only=(SHIPPING_IS_ADMINS,))
DELETE = Route("DELETE", "/orders/{id}", "order", Stub, "DeleteOrder", pb.DeleteOrderRequest,
               Access.OWNER_OR_ADMIN, idempotent=True, status=204, customer_field="customer")
ROUTES = (LIST, GET, CREATE, UPDATE, DELETE)

Address = Annotated[str, Field(max_length=500)]
Note = Annotated[str, Field(max_length=1000)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]{1,200}$",
    description="the same key with the same body places one order, however often sent")]


class OrderItemIn(BaseModel):
    model_config = STRICT
    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]


class PaymentIn(BaseModel):
    model_config = STRICT
    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class OrderCreate(BaseModel):
    """A new order for the signed-in customer; the total is computed by the service."""

    model_config = STRICT | {"json_schema_extra": {"examples": [
        {"items": [{"product_id": "P001", "quantity": 2}], "payment": {"token": "tok_visa"},
         "shipping_address": "1 Main St, Springfield"}]}}
    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=100)]
    payment: PaymentIn
    shipping_address: Address = ""
    note: Note = ""


class OrderUpdate(BaseModel):
    """Change the address or note, or move the status (customers may only cancel)."""

    model_config = STRICT | {"json_schema_extra": {"examples": [{"status": "cancelled"}]}}
    shipping_address: Address | None = None
    note: Note | None = None
    status: Literal["shipped", "delivered", "cancelled"] | None = None


class OrderItem(BaseModel):
    product_id: str
    name: str
    quantity: int
    unit_price: str
    line_total: str


class Order(BaseModel):
    """An order."""

    model_config = {"json_schema_extra": {"examples": [
        {"id": "O001", "customer": "12345", "total": "100.00", "currency": "USD",
         "status": "confirmed", "items": [{"product_id": "P001", "name": "Product A",
                                           "quantity": 2, "unit_price": "50.00",
                                           "line_total": "100.00"}],
         "shipping_address": "", "note": "", "payment_reference": "ch_1",
         "create_time": "2026-11-29T10:00:00Z", "update_time": "2026-11-29T10:00:00Z"}]}}
    id: str
    customer: str
    items: list[OrderItem]
    total: str
    currency: str
    status: str
    shipping_address: str
    note: str
    payment_reference: str
    create_time: datetime
    update_time: datetime


def router(dispatch: Dispatcher) -> APIRouter:
    api = APIRouter(tags=["orders"])

    async def list_orders(request: Request, limit: Limit = 20, cursor: Cursor = None,
                          customer: Annotated[str | None, Query(max_length=64)] = None):
        fields = {"page_size": limit, "page_token": cursor or ""}
        if customer:  # an admin's filter; for anyone else, their own orders
            fields["customer"] = customer
        return await dispatch.respond(LIST, request, fields)

    async def create_order(request: Request, body: Annotated[OrderCreate, Body()],
                           idempotency_key: IdempotencyKey = None):
        fields = {**body.model_dump(), "idempotency_key": idempotency_key or ""}
        return await dispatch.respond(CREATE, request, fields, idempotency_key=idempotency_key)

    async def update_order(request: Request, id: PathId, body: Annotated[OrderUpdate, Body()]):
        return await dispatch.respond(UPDATE, request, {**without_none(body), "id": id})

    async def delete_order(request: Request, id: PathId):
        return await dispatch.respond(DELETE, request, {"id": id})

    add(api, LIST, list_orders, response_model=list[Order],
        summary="List orders (your own; admins: all)", extra_errors=(401,))
    add(api, GET, by_id(dispatch, GET), response_model=Order, summary="Get an order by id",
        extra_errors=(401, 404))
    add(api, CREATE, create_order, response_model=Order, summary="Place an order",
        extra_errors=(401, 402, 404, 409))
    add(api, UPDATE, update_order, response_model=Order, summary="Update an order",
        extra_errors=(401, 403, 404))
    add(api, DELETE, delete_order, summary="Cancel an order", extra_errors=(401, 404))
    return api
