"""Create, read, update and delete products through a real ProductService server."""

from __future__ import annotations

import grpc
import pymongo
import pytest
import redis.asyncio as redis
from google.protobuf import json_format, struct_pb2

from portico.product.v1 import product_pb2
from services.common.invalidation import collection_generation_key, item_generation_key
from services.common.settings import ServiceSettings
from services.product import server

from .helpers import call_fails, make_product, unique


def attributes(**values) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


async def test_create_with_sku_then_get_returns_every_field(stub):
    sku = unique("SKU")
    created = (await stub.CreateProduct(product_pb2.CreateProductRequest(
        id=sku, name="Blue Mug", description="Holds tea.\nDishwasher safe.", price="7.5",
        stock=12, attributes=attributes(colour="blue", size={"ml": 350}, tags=["a", "b"]),
    ))).product
    assert created.id == sku
    assert created.price == "7.50"
    assert created.create_time.seconds > 0
    assert created.update_time == created.create_time

    fetched = (await stub.GetProduct(product_pb2.GetProductRequest(id=sku))).product
    assert fetched == created
    assert json_format.MessageToDict(fetched.attributes) == {
        "colour": "blue", "size": {"ml": 350}, "tags": ["a", "b"]}
    assert (fetched.name, fetched.description, fetched.stock) == (
        "Blue Mug", "Holds tea.\nDishwasher safe.", 12)


async def test_generated_ids_are_distinct_and_readable(stub):
    first = (await stub.CreateProduct(product_pb2.CreateProductRequest(
        name="Anon", price="0"))).product
    second = (await stub.CreateProduct(product_pb2.CreateProductRequest(
        name="Anon", price="0"))).product
    assert first.id and second.id and first.id != second.id
    assert first.price == "0.00"
    fetched = await stub.GetProduct(product_pb2.GetProductRequest(id=first.id))
    assert fetched.product.name == "Anon"


async def test_duplicate_id_is_already_exists(stub):
    product = await make_product(stub)
    failure = await call_fails(stub.CreateProduct(product_pb2.CreateProductRequest(
        id=product.id, name="Other", price="1")))
    assert failure.code == grpc.StatusCode.ALREADY_EXISTS
    assert failure.resource == ("product", product.id)
    assert (await stub.GetProduct(product_pb2.GetProductRequest(id=product.id))
            ).product.name == product.name


async def test_update_changes_only_the_fields_present(stub):
    product = await make_product(stub, name="Lamp", price="30", stock=4)
    request = product_pb2.UpdateProductRequest(id=product.id, price="29.95")
    updated = (await stub.UpdateProduct(request)).product
    assert (updated.name, updated.price, updated.stock) == ("Lamp", "29.95", 4)
    assert updated.update_time.ToDatetime() >= product.update_time.ToDatetime()

    request = product_pb2.UpdateProductRequest(
        id=product.id, name="Desk Lamp", description="", stock=0,
        attributes=attributes(watts=40))
    updated = (await stub.UpdateProduct(request)).product
    assert (updated.name, updated.description, updated.price, updated.stock) == (
        "Desk Lamp", "", "29.95", 0)
    assert json_format.MessageToDict(updated.attributes) == {"watts": 40}
    assert (await stub.GetProduct(product_pb2.GetProductRequest(id=product.id))
            ).product == updated


async def test_update_with_empty_attributes_clears_them(stub):
    created = (await stub.CreateProduct(product_pb2.CreateProductRequest(
        id=unique(), name="Hat", price="5", attributes=attributes(size="M")))).product
    request = product_pb2.UpdateProductRequest(id=created.id)
    request.attributes.SetInParent()
    updated = (await stub.UpdateProduct(request)).product
    assert json_format.MessageToDict(updated.attributes) == {}


async def test_deleted_product_is_not_found_everywhere(stub):
    product = await make_product(stub)
    await stub.DeleteProduct(product_pb2.DeleteProductRequest(id=product.id))
    calls = [
        stub.GetProduct(product_pb2.GetProductRequest(id=product.id)),
        stub.UpdateProduct(product_pb2.UpdateProductRequest(id=product.id, name="x")),
        stub.DeleteProduct(product_pb2.DeleteProductRequest(id=product.id)),
        stub.ReserveStock(product_pb2.ReserveStockRequest(
            reservation_id=unique("R"),
            items=[product_pb2.StockItem(product_id=product.id, quantity=1)])),
    ]
    for call in calls:
        failure = await call_fails(call)
        assert failure.code == grpc.StatusCode.NOT_FOUND
        assert failure.resource == ("product", product.id)
    listed = await stub.ListProducts(product_pb2.ListProductsRequest(name=product.name,
                                                                     page_size=100))
    assert product.id not in [p.id for p in listed.products]


async def test_unknown_product_is_not_found(stub):
    failure = await call_fails(stub.GetProduct(product_pb2.GetProductRequest(id="nope")))
    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert failure.resource == ("product", "nope")


async def test_a_deleted_id_can_be_created_again_fresh(stub):
    old = await make_product(stub, name="Old", stock=3)
    await stub.DeleteProduct(product_pb2.DeleteProductRequest(id=old.id))
    new = await make_product(stub, product_id=old.id, name="New", stock=8, price="2")
    assert (new.name, new.stock, new.price) == ("New", 8, "2.00")
    assert new.create_time.ToDatetime() >= old.create_time.ToDatetime()
    assert (await stub.GetProduct(product_pb2.GetProductRequest(id=old.id))).product == new


async def test_writes_bump_generation_keys_in_redis(stub, redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        product_id = unique()

        async def generations() -> tuple[int, int]:
            item = await client.get(item_generation_key("product", product_id))
            collection = await client.get(collection_generation_key("product"))
            return int(item or 0), int(collection or 0)

        before = await generations()
        await make_product(stub, product_id=product_id, stock=5)
        after_create = await generations()
        assert after_create[0] > before[0] and after_create[1] > before[1]

        await stub.UpdateProduct(product_pb2.UpdateProductRequest(id=product_id, stock=6))
        after_update = await generations()
        assert after_update[0] > after_create[0]

        await stub.ReserveStock(product_pb2.ReserveStockRequest(
            reservation_id=unique("R"),
            items=[product_pb2.StockItem(product_id=product_id, quantity=2)]))
        after_reserve = await generations()
        assert after_reserve[0] > after_update[0]

        await stub.DeleteProduct(product_pb2.DeleteProductRequest(id=product_id))
        assert (await generations())[0] > after_reserve[0]
    finally:
        await client.aclose()


async def test_indexes_exist_after_start(stub, mongo):
    indexes = {index["name"]: dict(index["key"]) async for index in
               await mongo.products.list_indexes()}
    assert indexes["name_lower_id"] == {"name_lower": 1, "_id": 1}


def test_migrate_creates_the_indexes_and_can_run_twice(mongo_uri, mongo_database_name):
    settings = ServiceSettings(mongodb_uri=mongo_uri,
                               mongodb_database=f"{mongo_database_name}_migrate")
    with pymongo.MongoClient(mongo_uri) as client:
        try:
            server.migrate(settings)
            server.migrate(settings)
            names = [index["name"] for index in
                     client[settings.mongodb_database].products.list_indexes()]
        finally:
            client.drop_database(settings.mongodb_database)
    assert "name_lower_id" in names


async def test_start_without_mongodb_uri_is_a_clear_error():
    with pytest.raises(ValueError, match="PORTICO_MONGODB_URI"):
        await server.start(ServiceSettings(mongodb_uri=None))
