"""Paging and the name filter, in a database of this module's own (exact expectations)."""

from __future__ import annotations

import grpc
import pytest_asyncio

from portico.product.v1 import product_pb2

from .helpers import call_fails, make_product

NAMES = [".* dot star", "^ caret", "( paren", "$gt dollar", "[a-z] class", "a-z plain",
         "Apple pie", "apple Juice", "APPLESAUCE", "pineapple", "Äpfel", "dot only"]


@pytest_asyncio.fixture(scope="module")
async def catalogue(stub) -> dict[str, str]:
    """25 plain products B00..B24 plus the named ones N00..; id -> name."""
    created = {}
    for index in range(25):
        product = await make_product(stub, product_id=f"B{index:02d}", name=f"Bulk {index}")
        created[product.id] = product.name
    for index, name in enumerate(NAMES):
        product = await make_product(stub, product_id=f"N{index:02d}", name=name)
        created[product.id] = product.name
    deleted = await make_product(stub, product_id="N99", name="apple deleted")
    await stub.DeleteProduct(product_pb2.DeleteProductRequest(id=deleted.id))
    return created


async def list_all(stub, *, page_size: int, name: str = "") -> tuple[list[str], int]:
    """Every id over all pages, and the number of pages."""
    ids, token, pages = [], "", 0
    while True:
        response = await stub.ListProducts(product_pb2.ListProductsRequest(
            page_size=page_size, page_token=token, name=name))
        pages += 1
        assert len(response.products) <= page_size
        ids += [product.id for product in response.products]
        token = response.next_page_token
        if not token:
            return ids, pages


async def named(stub, name: str) -> set[str]:
    ids, _ = await list_all(stub, page_size=100, name=name)
    return set(ids)


async def test_pages_of_ten_see_every_product_once_in_id_order(stub, catalogue):
    bulk, pages = await list_all(stub, page_size=10, name="bulk")
    assert bulk == [f"B{index:02d}" for index in range(25)]
    assert pages == 3

    everything, _ = await list_all(stub, page_size=10)
    assert everything == sorted(catalogue)


async def test_default_page_size_is_twenty(stub, catalogue):
    response = await stub.ListProducts(product_pb2.ListProductsRequest())
    assert len(response.products) == 20
    assert response.next_page_token


async def test_prices_are_listed_with_two_places(stub, catalogue):
    response = await stub.ListProducts(product_pb2.ListProductsRequest(page_size=1))
    assert response.products[0].price == "19.99"


async def test_name_filter_is_a_case_insensitive_prefix(stub, catalogue):
    assert await named(stub, "apple") == {"N06", "N07", "N08"}
    assert await named(stub, "APPLE J") == {"N07"}
    assert await named(stub, "äPF") == {"N10"}
    assert await named(stub, "nothing like this") == set()


async def test_name_filter_is_literal_text_never_a_pattern_or_operator(stub, catalogue):
    assert await named(stub, ".*") == {"N00"}
    assert await named(stub, ".") == {"N00"}
    assert await named(stub, "^") == {"N01"}
    assert await named(stub, "(") == {"N02"}
    assert await named(stub, "$gt") == {"N03"}
    assert await named(stub, "[a-z]") == {"N04"}
    assert await named(stub, "a-z") == {"N05"}
    assert await named(stub, "\\") == set()


async def test_malformed_page_token_is_invalid_argument(stub, catalogue):
    for token in ("not base64!", "AAAA", "Li4v", "QjAw==x"):
        failure = await call_fails(stub.ListProducts(
            product_pb2.ListProductsRequest(page_token=token)))
        assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, token
        assert set(failure.fields) == {"page_token"}, token
