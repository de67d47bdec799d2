"""Every kind of bad input is INVALID_ARGUMENT naming each bad field, over real gRPC."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from portico.product.v1 import product_pb2

from .helpers import call_fails, make_product, stock_of, unique


def create(**fields) -> product_pb2.CreateProductRequest:
    values = {"name": "Valid", "price": "1.00"} | fields
    return product_pb2.CreateProductRequest(**values)


def struct(value: dict) -> struct_pb2.Struct:
    built = struct_pb2.Struct()
    built.update(value)
    return built


async def expect_fields(call, fields: set[str]) -> None:
    failure = await call_fails(call)
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(failure.fields) == fields


@pytest.mark.parametrize("price", ["NaN", "nan", "Infinity", "1e3", "-1", "1.234", "", " 1",
                                   "1 ", "+1", "1,00", "1.", ".5", "0x10", "٣", "1000000000.01",
                                   "99999999999"])
async def test_bad_prices_are_refused(stub, price):
    await expect_fields(stub.CreateProduct(create(price=price)), {"price"})


@pytest.mark.parametrize(("price", "shown"), [("0", "0.00"), ("19.99", "19.99"), ("5.5", "5.50"),
                                              ("1000000000", "1000000000.00"), ("007", "7.00")])
async def test_good_prices_are_kept_exactly(stub, price, shown):
    created = (await stub.CreateProduct(create(price=price))).product
    assert created.price == shown


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "tab\there", "bell\x07", "nul\x00"])
async def test_bad_names_are_refused(stub, name):
    await expect_fields(stub.CreateProduct(create(name=name)), {"name"})


async def test_name_of_200_characters_is_accepted(stub):
    assert (await stub.CreateProduct(create(name="é" * 200))).product.name == "é" * 200


@pytest.mark.parametrize("product_id", ["has space", "slash/", "dot.dot", "$gt", "x" * 65, "ü"])
async def test_bad_ids_are_refused(stub, product_id):
    await expect_fields(stub.CreateProduct(create(id=product_id)), {"id"})
    await expect_fields(stub.GetProduct(product_pb2.GetProductRequest(id=product_id)), {"id"})
    await expect_fields(stub.DeleteProduct(product_pb2.DeleteProductRequest(id=product_id)),
                        {"id"})


async def test_empty_id_is_refused_where_one_is_needed(stub):
    await expect_fields(stub.GetProduct(product_pb2.GetProductRequest()), {"id"})
    await expect_fields(stub.UpdateProduct(product_pb2.UpdateProductRequest(name="x")), {"id"})


@pytest.mark.parametrize("attributes", [{"$where": 1}, {"a.b": 1}, {"": 1},
                                        {"ok": {"$gt": ""}}, {"ok": [{"x.y": 1}]},
                                        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}},
                                        {"big": "x" * 20000}])
async def test_bad_attributes_are_refused(stub, attributes):
    await expect_fields(stub.CreateProduct(create(attributes=struct(attributes))),
                        {"attributes"})


async def test_non_finite_attribute_numbers_are_refused(stub):
    await expect_fields(stub.CreateProduct(create(attributes=struct({"x": float("nan")}))),
                        {"attributes"})


async def test_every_bad_field_is_reported_at_once(stub):
    request = create(id="bad id", name="", description="d" * 5001, price="1e3", stock=-1,
                     attributes=struct({"$set": 1}))
    await expect_fields(stub.CreateProduct(request),
                        {"id", "name", "description", "price", "stock", "attributes"})


async def test_bad_update_changes_nothing(stub):
    product = await make_product(stub, stock=3)
    request = product_pb2.UpdateProductRequest(id=product.id, name="", price="-1",
                                               stock=1_000_000_001, description="\x1b")
    await expect_fields(stub.UpdateProduct(request), {"name", "price", "stock", "description"})
    assert (await stub.GetProduct(product_pb2.GetProductRequest(id=product.id))
            ).product == product


@pytest.mark.parametrize(("request_fields", "fields"), [
    ({"page_size": -1}, {"page_size"}),
    ({"page_size": 101}, {"page_size"}),
    ({"name": "x" * 201}, {"name"}),
    ({"name": "a\nb"}, {"name"}),
    ({"page_size": 500, "page_token": "!!", "name": "\x00"}, {"page_size", "page_token", "name"}),
])
async def test_bad_list_requests_are_refused(stub, request_fields, fields):
    await expect_fields(stub.ListProducts(product_pb2.ListProductsRequest(**request_fields)),
                        fields)


def item(product_id: str, quantity: int = 1) -> product_pb2.StockItem:
    return product_pb2.StockItem(product_id=product_id, quantity=quantity)


async def test_bad_reservations_are_refused_and_move_no_stock(stub):
    product = await make_product(stub, stock=5)
    cases = [
        (product_pb2.ReserveStockRequest(reservation_id="", items=[item(product.id)]),
         {"reservation_id"}),
        (product_pb2.ReserveStockRequest(reservation_id="a.b", items=[item(product.id)]),
         {"reservation_id"}),
        (product_pb2.ReserveStockRequest(reservation_id=unique("R")), {"items"}),
        (product_pb2.ReserveStockRequest(reservation_id=unique("R"),
                                         items=[item(product.id)] * 2),
         {"items[1].product_id"}),
        (product_pb2.ReserveStockRequest(reservation_id=unique("R"),
                                         items=[item(product.id, 0), item("x y", 1_000_001)]),
         {"items[0].quantity", "items[1].product_id", "items[1].quantity"}),
        (product_pb2.ReserveStockRequest(reservation_id=unique("R"),
                                         items=[item(f"P{n}") for n in range(101)]),
         {"items"}),
    ]
    for request, fields in cases:
        await expect_fields(stub.ReserveStock(request), fields)
    assert await stock_of(stub, product.id) == 5


async def test_bad_reservation_ids_are_refused_by_release_and_commit(stub):
    await expect_fields(stub.ReleaseStock(product_pb2.ReleaseStockRequest(
        reservation_id="$x")), {"reservation_id"})
    await expect_fields(stub.CommitStock(product_pb2.CommitStockRequest(
        reservation_id="")), {"reservation_id"})
