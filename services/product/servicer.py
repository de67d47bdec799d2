"""ProductService over gRPC: protobuf in, validated domain values to the store, protobuf out."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.product import validation
from services.product.access import require_admin
from services.product.models import Product, ReservedLine, encode_page_token, format_price
from services.product.store import ProductStore

KIND = "product"


class ChangeSignals(Protocol):
    """Where writes announce what they changed (services.common.invalidation.CacheSignals)."""

    async def changed(self, kind: str, *item_ids: str) -> None: ...


class ProductServicer(product_pb2_grpc.ProductServiceServicer):
    """The catalogue and its stock. Every write signals the products it changed before it
    returns, so no gateway replica serves a cached copy from before the write."""

    def __init__(self, store: ProductStore, signals: ChangeSignals) -> None:
        self._store = store
        self._signals = signals

    async def ListProducts(self, request: product_pb2.ListProductsRequest,
                           context: grpc.aio.ServicerContext
                           ) -> product_pb2.ListProductsResponse:
        page_size, after, name = validation.list_query(request)
        products, more = await self._store.list_page(page_size=page_size, after=after,
                                                name_prefix=name)
        token = encode_page_token(products[-1].id) if more else ""
        return product_pb2.ListProductsResponse(
            products=[_product(p) for p in products], next_page_token=token)

    async def GetProduct(self, request: product_pb2.GetProductRequest,
                         context: grpc.aio.ServicerContext) -> product_pb2.GetProductResponse:
        product = await self._store.get(validation.product_id(request.id))
        return product_pb2.GetProductResponse(product=_product(product))

    async def CreateProduct(self, request: product_pb2.CreateProductRequest,
                            context: grpc.aio.ServicerContext
                            ) -> product_pb2.CreateProductResponse:
        new = validation.new_product(request)
        require_admin()
        product = await self._store.create(new)
        await self._signals.changed(KIND, product.id)
        return product_pb2.CreateProductResponse(product=_product(product))

    async def UpdateProduct(self, request: product_pb2.UpdateProductRequest,
                            context: grpc.aio.ServicerContext
                            ) -> product_pb2.UpdateProductResponse:
        changes = validation.product_changes(request)
        require_admin()
        product = await self._store.update(request.id, changes)
        await self._signals.changed(KIND, product.id)
        return product_pb2.UpdateProductResponse(product=_product(product))

    async def DeleteProduct(self, request: product_pb2.DeleteProductRequest,
                            context: grpc.aio.ServicerContext
                            ) -> product_pb2.DeleteProductResponse:
        product_id = validation.product_id(request.id)
        require_admin()
        await self._store.delete(product_id)
        await self._signals.changed(KIND, product_id)
        return product_pb2.DeleteProductResponse()

    async def ReserveStock(self, request: product_pb2.ReserveStockRequest,
                           context: grpc.aio.ServicerContext
                           ) -> product_pb2.ReserveStockResponse:
        items = validation.stock_items(request)
        try:
            lines = await self._store.reserve(request.reservation_id, items)
        finally:
            # Even a refused reservation may have held and given back stock on the way, and a
            # read in between could have been cached.
            await self._signals.changed(KIND, *(product_id for product_id, _ in items))
        return product_pb2.ReserveStockResponse(
            reservation_id=request.reservation_id, items=[_reserved(line) for line in lines])

    async def ReleaseStock(self, request: product_pb2.ReleaseStockRequest,
                           context: grpc.aio.ServicerContext
                           ) -> product_pb2.ReleaseStockResponse:
        reservation_id = validation.reservation_id(request.reservation_id)
        released, product_ids = await self._store.release(reservation_id)
        await self._signals.changed(KIND, *product_ids)
        return product_pb2.ReleaseStockResponse(released=released)

    async def CommitStock(self, request: product_pb2.CommitStockRequest,
                          context: grpc.aio.ServicerContext
                          ) -> product_pb2.CommitStockResponse:
        # Committing only drops bookkeeping; no visible field changes, so nothing to signal.
        committed = await self._store.commit(validation.reservation_id(request.reservation_id))
        return product_pb2.CommitStockResponse(committed=committed)


def _product(product: Product) -> product_pb2.Product:
    attributes = struct_pb2.Struct()
    attributes.update(product.attributes)
    return product_pb2.Product(
        id=product.id, name=product.name, description=product.description,
        price=format_price(product.price_cents), stock=product.stock, attributes=attributes,
        create_time=_timestamp(product.created_at), update_time=_timestamp(product.updated_at))


def _reserved(line: ReservedLine) -> product_pb2.ReservedItem:
    return product_pb2.ReservedItem(product_id=line.product_id, quantity=line.quantity,
                                    unit_price=format_price(line.unit_price_cents),
                                    name=line.name)


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
