"""/products and the Product service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field, field_validator

from gateway.policies.cache_entry import CacheRule
from gateway.routes.dispatch import Dispatcher
from gateway.routes.schemas import (
    STRICT,
    Cursor,
    Id,
    Limit,
    Money,
    Name,
    PathId,
    add,
    by_id,
    without_none,
)
from gateway.routes.table import Access, Route
from portico.product.v1 import product_pb2 as pb
from portico.product.v1 import product_pb2_grpc as grpc_pb

Stub = grpc_pb.ProductServiceStub
LIST = Route("GET", "/products", "product", Stub, "ListProducts", pb.ListProductsRequest,
             Access.PUBLIC, idempotent=True, read=True, list_field="products",
             cache=CacheRule("product"))
GET = Route("GET", "/products/{id}", "product", Stub, "GetProduct", pb.GetProductRequest,
            Access.PUBLIC, idempotent=True, read=True, response_field="product",
            cache=CacheRule("product", id_field="id"))
CREATE = Route("POST", "/products", "product", Stub, "CreateProduct", pb.CreateProductRequest,
               Access.ADMIN, status=201, response_field="product", location="/products/{id}")
UPDATE = Route("PUT", "/products/{id}", "product", Stub, "UpdateProduct",
               pb.UpdateProductRequest, Access.ADMIN, idempotent=True,
               response_field="product")
DELETE = Route("DELETE", "/products/{id}", "product", Stub, "DeleteProduct",
               pb.DeleteProductRequest, Access.ADMIN, idempotent=True, status=204)
ROUTES = (LIST, GET, CREATE, UPDATE, DELETE)

Stock = Annotated[int, Field(ge=0, le=1_000_000_000)]
Description = Annotated[str, Field(max_length=5000)]


def _plain_keys(value: Any, path: str = "attributes") -> Any:
    """Attribute keys become document fields: none may look like an operator or a path."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.startswith("$") or "." in key or not key:
                raise ValueError(f"{path}: key {key!r} may not be empty, start with '$' "
                                 "or contain '.'")
            _plain_keys(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for inner in value:
            _plain_keys(inner, path)
    return value


class ProductCreate(BaseModel):
    """A new product; the id is a SKU of your choice or generated."""

    model_config = STRICT | {"json_schema_extra": {"examples": [
        {"id": "P001", "name": "Product A", "description": "A fine product", "price": "19.99",
         "stock": 10, "attributes": {"colour": "red"}}]}}
    id: Id | None = None
    name: Name
    description: Description = ""
    price: Money
    stock: Stock = 0
    attributes: dict[str, Any] = Field(default_factory=dict)

    _keys = field_validator("attributes")(_plain_keys)


class ProductUpdate(BaseModel):
    """The fields to change; the others keep their values."""

    model_config = STRICT | {"json_schema_extra": {"examples": [{"price": "17.50"}]}}
    name: Name | None = None
    description: Description | None = None
    price: Money | None = None
    stock: Stock | None = None
    attributes: dict[str, Any] | None = None

    _keys = field_validator("attributes")(_plain_keys)


class Product(BaseModel):
    """A product of the catalogue."""

    model_config = {"json_schema_extra": {"examples": [
        {"id": "P001", "name": "Product A", "description": "", "price": "19.99", "stock": 10,
         "attributes": {}, "create_time": "2026-11-29T10:00:00Z",
         "update_time": "2026-11-29T10:00:00Z"}]}}
    id: str
    name: str
    description: str
    price: str
    stock: int
    attributes: dict[str, Any]
    create_time: datetime
    update_time: datetime


def router(dispatch: Dispatcher) -> APIRouter:
    api = APIRouter(tags=["products"])

    async def list_products(request: Request, limit: Limit = 20, cursor: Cursor = None,
                            name: Annotated[str | None, Query(max_length=200)] = None):
        return await dispatch.respond(LIST, request, {
            "page_size": limit, "page_token": cursor or "", "name": name or ""})

    async def create_product(request: Request, body: Annotated[ProductCreate, Body()]):
        return await dispatch.respond(CREATE, request, without_none(body))

    async def update_product(request: Request, id: PathId,
                             body: Annotated[ProductUpdate, Body()]):
        return await dispatch.respond(UPDATE, request, {**without_none(body), "id": id})

    async def delete_product(request: Request, id: PathId):
        return await dispatch.respond(DELETE, request, {"id": id})

    add(api, LIST, list_products, response_model=list[Product], summary="List products")
    add(api, GET, by_id(dispatch, GET), response_model=Product, summary="Get a product by id",
        extra_errors=(404,))
    add(api, CREATE, create_product, response_model=Product, summary="Create a product",
        extra_errors=(401, 403, 409))
    add(api, UPDATE, update_product, response_model=Product, summary="Update a product",
        extra_errors=(401, 403, 404))
    add(api, DELETE, delete_product, summary="Delete a product", extra_errors=(401, 403, 404))
    return api
