"""Request checks of the Product service, without a server: what each request turns into."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from portico.product.v1 import product_pb2
from services.common.errors import InvalidArgument
from services.product import validation
from services.product.models import ProductChanges, encode_page_token


def fields_of(call) -> set[str]:
    with pytest.raises(InvalidArgument) as caught:
        call()
    return {field for field, _ in caught.value.violations}


def struct(value: dict) -> struct_pb2.Struct:
    built = struct_pb2.Struct()
    built.update(value)
    return built


def test_new_product_converts_price_to_cents_and_leaves_id_to_the_server():
    new = validation.new_product(product_pb2.CreateProductRequest(
        name="Mug", price="7.5", stock=3, attributes=struct({"colour": "red"})))
    assert (new.id, new.name, new.price_cents, new.stock, new.attributes) == (
        None, "Mug", 750, 3, {"colour": "red"})


def test_update_takes_only_the_fields_present():
    request = product_pb2.UpdateProductRequest(id="P1", price="2", stock=0)
    assert validation.product_changes(request) == ProductChanges(price_cents=200, stock=0)
    request = product_pb2.UpdateProductRequest(id="P1", name="", description="")
    assert fields_of(lambda: validation.product_changes(request)) == {"name"}
    request = product_pb2.UpdateProductRequest(id="P1")
    request.attributes.SetInParent()
    assert validation.product_changes(request) == ProductChanges(attributes={})


def test_description_may_hold_line_breaks_and_tabs_but_no_other_control_characters():
    ok = product_pb2.CreateProductRequest(name="n", price="1", description="a\r\n\tb")
    assert validation.new_product(ok).description == "a\r\n\tb"
    bad = product_pb2.CreateProductRequest(name="n", price="1", description="a\x00")
    assert fields_of(lambda: validation.new_product(bad)) == {"description"}


@pytest.mark.parametrize("attributes", [
    {"$gt": 1}, {"a.b": 1}, {"": 1}, {"k\x00": 1}, {"ok": [[{"$x": 1}]]},
    {"ok": {"deeper": {"$in": []}}}])
def test_attribute_keys_that_mongodb_would_read_as_operators_or_paths_are_refused(attributes):
    request = product_pb2.CreateProductRequest(name="n", price="1",
                                               attributes=struct(attributes))
    assert fields_of(lambda: validation.new_product(request)) == {"attributes"}


def test_attribute_values_may_look_like_operators():
    request = product_pb2.CreateProductRequest(name="n", price="1",
                                               attributes=struct({"note": "$gt", "l": ["a.b"]}))
    assert validation.new_product(request).attributes == {"note": "$gt", "l": ["a.b"]}


def test_list_query_defaults_and_token():
    assert validation.list_query(product_pb2.ListProductsRequest()) == (20, None, "")
    request = product_pb2.ListProductsRequest(page_size=100,
                                              page_token=encode_page_token("P7"), name="$gt")
    assert validation.list_query(request) == (100, "P7", "$gt")


def test_stock_items_refuse_duplicates_instead_of_merging_them():
    request = product_pb2.ReserveStockRequest(reservation_id="r1", items=[
        product_pb2.StockItem(product_id="A", quantity=1),
        product_pb2.StockItem(product_id="B", quantity=1_000_000),
        product_pb2.StockItem(product_id="A", quantity=2)])
    assert fields_of(lambda: validation.stock_items(request)) == {"items[2].product_id"}
    del request.items[2]
    assert validation.stock_items(request) == [("A", 1), ("B", 1_000_000)]
