"""Stock reservations: all or none, idempotent, exactly once, never below zero, under
concurrency, against the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc

from portico.product.v1 import product_pb2

from .helpers import call_fails, make_product, stock_of, unique
from .helpers import failure as decode


def item(product_id: str, quantity: int = 1) -> product_pb2.StockItem:
    return product_pb2.StockItem(product_id=product_id, quantity=quantity)


def reserve(stub, reservation_id: str, *items: product_pb2.StockItem):
    return stub.ReserveStock(product_pb2.ReserveStockRequest(reservation_id=reservation_id,
                                                             items=items))


def release(stub, reservation_id: str):
    return stub.ReleaseStock(product_pb2.ReleaseStockRequest(reservation_id=reservation_id))


def commit(stub, reservation_id: str):
    return stub.CommitStock(product_pb2.CommitStockRequest(reservation_id=reservation_id))


async def holds(mongo, product_id: str) -> dict:
    return (await mongo.products.find_one({"_id": product_id}))["holds"]


async def test_fifty_concurrent_reservations_take_exactly_the_stock(stub, mongo):
    product = await make_product(stub, stock=10)
    ids = [unique("R") for _ in range(50)]
    results = await asyncio.gather(*(reserve(stub, rid, item(product.id)) for rid in ids),
                                   return_exceptions=True)
    won = [r for r in results if isinstance(r, product_pb2.ReserveStockResponse)]
    lost = [r for r in results if not isinstance(r, product_pb2.ReserveStockResponse)]
    assert len(won) == 10 and len(lost) == 40
    for error in lost:
        failure = decode(error)
        assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
        assert failure.reason == "OUT_OF_STOCK"
        assert failure.metadata == {"product_id": product.id, "requested": "1",
                                    "available": "0"}
    assert await stock_of(stub, product.id) == 0
    assert sorted(await holds(mongo, product.id)) == sorted(r.reservation_id for r in won)


async def test_concurrent_multi_item_reservations_are_all_or_none(stub):
    plenty = await make_product(stub, stock=10)
    scarce = await make_product(stub, stock=5)
    results = await asyncio.gather(
        *(reserve(stub, unique("R"), item(plenty.id), item(scarce.id)) for _ in range(20)),
        return_exceptions=True)
    assert sum(isinstance(r, product_pb2.ReserveStockResponse) for r in results) == 5
    assert await stock_of(stub, plenty.id) == 5
    assert await stock_of(stub, scarce.id) == 0


async def test_one_short_item_leaves_every_stock_unchanged(stub, mongo):
    first = await make_product(stub, stock=4)
    short = await make_product(stub, stock=2)
    last = await make_product(stub, stock=9)
    rid = unique("R")
    failure = await call_fails(reserve(stub, rid, item(first.id, 4), item(short.id, 3),
                                       item(last.id, 1)))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "OUT_OF_STOCK"
    assert failure.metadata == {"product_id": short.id, "requested": "3", "available": "2"}
    for product, stock in ((first, 4), (short, 2), (last, 9)):
        assert await stock_of(stub, product.id) == stock
        assert await holds(mongo, product.id) == {}
    # The failed reservation is closed: retrying it changes nothing.
    failure = await call_fails(reserve(stub, rid, item(first.id, 4), item(short.id, 3),
                                       item(last.id, 1)))
    assert failure.reason == "RESERVATION_CLOSED"
    assert await stock_of(stub, first.id) == 4


async def test_an_unknown_product_fails_the_whole_reservation(stub):
    known = await make_product(stub, stock=3)
    missing = unique()
    failure = await call_fails(reserve(stub, unique("R"), item(known.id, 2), item(missing)))
    assert failure.code == grpc.StatusCode.NOT_FOUND
    assert failure.resource == ("product", missing)
    assert await stock_of(stub, known.id) == 3


async def test_reservation_returns_price_and_name_of_reservation_time(stub):
    product = await make_product(stub, stock=5, price="12.50", name="Kettle")
    rid = unique("R")
    response = await reserve(stub, rid, item(product.id, 2))
    assert response.reservation_id == rid
    assert [(i.product_id, i.quantity, i.unit_price, i.name) for i in response.items] == [
        (product.id, 2, "12.50", "Kettle")]
    await stub.UpdateProduct(product_pb2.UpdateProductRequest(id=product.id, price="99",
                                                              name="Kettle II"))
    assert await reserve(stub, rid, item(product.id, 2)) == response


async def test_the_same_reservation_twice_reserves_once(stub):
    product = await make_product(stub, stock=5)
    rid = unique("R")
    first = await reserve(stub, rid, item(product.id, 2))
    second = await reserve(stub, rid, item(product.id, 2))
    assert first == second
    assert await stock_of(stub, product.id) == 3


async def test_the_same_reservation_ten_times_concurrently_reserves_once(stub, mongo):
    one = await make_product(stub, stock=5)
    two = await make_product(stub, stock=5)
    rid = unique("R")
    responses = await asyncio.gather(
        *(reserve(stub, rid, item(one.id, 2), item(two.id, 3)) for _ in range(10)))
    assert all(response == responses[0] for response in responses)
    assert (await stock_of(stub, one.id), await stock_of(stub, two.id)) == (3, 2)
    assert await holds(mongo, one.id) == {rid: 2}


async def test_the_same_id_with_other_items_is_already_exists(stub):
    product = await make_product(stub, stock=5)
    rid = unique("R")
    await reserve(stub, rid, item(product.id, 1))
    failure = await call_fails(reserve(stub, rid, item(product.id, 2)))
    assert failure.code == grpc.StatusCode.ALREADY_EXISTS
    assert failure.reason == "RESERVATION_MISMATCH"
    assert await stock_of(stub, product.id) == 4


async def test_item_order_does_not_make_a_different_reservation(stub):
    one = await make_product(stub, stock=5)
    two = await make_product(stub, stock=5)
    rid = unique("R")
    await reserve(stub, rid, item(one.id), item(two.id))
    await reserve(stub, rid, item(two.id), item(one.id))
    assert (await stock_of(stub, one.id), await stock_of(stub, two.id)) == (4, 4)


async def test_ten_concurrent_releases_give_the_stock_back_once(stub, mongo):
    one = await make_product(stub, stock=6)
    two = await make_product(stub, stock=6)
    rid = unique("R")
    await reserve(stub, rid, item(one.id, 4), item(two.id, 1))
    responses = await asyncio.gather(*(release(stub, rid) for _ in range(10)))
    assert sum(response.released for response in responses) == 1
    assert (await stock_of(stub, one.id), await stock_of(stub, two.id)) == (6, 6)
    assert await holds(mongo, one.id) == {}
    assert (await release(stub, rid)).released is False
    assert await stock_of(stub, one.id) == 6


async def test_reserving_a_released_reservation_again_is_refused(stub):
    product = await make_product(stub, stock=3)
    rid = unique("R")
    await reserve(stub, rid, item(product.id, 3))
    await release(stub, rid)
    failure = await call_fails(reserve(stub, rid, item(product.id, 3)))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "RESERVATION_CLOSED"
    assert await stock_of(stub, product.id) == 3


async def test_commit_keeps_the_stock_and_refuses_a_later_release(stub, mongo):
    product = await make_product(stub, stock=5)
    rid = unique("R")
    await reserve(stub, rid, item(product.id, 2))
    assert (await commit(stub, rid)).committed is True
    assert (await commit(stub, rid)).committed is False
    assert await holds(mongo, product.id) == {}
    failure = await call_fails(release(stub, rid))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "RESERVATION_COMMITTED"
    assert await stock_of(stub, product.id) == 3


async def test_commit_after_release_is_refused(stub):
    product = await make_product(stub, stock=5)
    rid = unique("R")
    await reserve(stub, rid, item(product.id, 2))
    await release(stub, rid)
    failure = await call_fails(commit(stub, rid))
    assert failure.code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure.reason == "RESERVATION_RELEASED"
    assert await stock_of(stub, product.id) == 5


async def test_unknown_reservations_are_not_found(stub):
    for call in (release(stub, "never-made"), commit(stub, "never-made")):
        failure = await call_fails(call)
        assert failure.code == grpc.StatusCode.NOT_FOUND
        assert failure.resource == ("reservation", "never-made")


async def test_release_gives_back_holds_of_a_reservation_left_half_done(stub, mongo):
    """A service instance that died mid-reservation left a pending reservation and one hold."""
    product = await make_product(stub, stock=7)
    other = await make_product(stub, stock=7)
    rid = unique("R")
    now = datetime.now(UTC)
    await mongo.reservations.insert_one({
        "_id": rid, "state": "pending", "created_at": now, "updated_at": now,
        "items": [{"product_id": product.id, "quantity": 3},
                  {"product_id": other.id, "quantity": 1}]})
    await mongo.products.update_one({"_id": product.id},
                                    {"$inc": {"stock": -3}, "$set": {f"holds.{rid}": 3}})
    assert (await release(stub, rid)).released is True
    assert (await stock_of(stub, product.id), await stock_of(stub, other.id)) == (7, 7)


async def test_a_retry_finishes_a_reservation_left_half_done(stub, mongo):
    product = await make_product(stub, stock=7)
    other = await make_product(stub, stock=7)
    rid = unique("R")
    now = datetime.now(UTC)
    items = sorted([(product.id, 3), (other.id, 1)])
    await mongo.reservations.insert_one({
        "_id": rid, "state": "pending", "created_at": now, "updated_at": now,
        "items": [{"product_id": p, "quantity": q} for p, q in items]})
    await mongo.products.update_one({"_id": product.id},
                                    {"$inc": {"stock": -3}, "$set": {f"holds.{rid}": 3}})
    await reserve(stub, rid, item(product.id, 3), item(other.id, 1))
    assert (await stock_of(stub, product.id), await stock_of(stub, other.id)) == (4, 6)


async def test_restock_sets_the_available_stock_while_holds_stay(stub, mongo):
    product = await make_product(stub, stock=2)
    rid = unique("R")
    await reserve(stub, rid, item(product.id, 2))
    await stub.UpdateProduct(product_pb2.UpdateProductRequest(id=product.id, stock=10))
    await release(stub, rid)
    assert await stock_of(stub, product.id) == 12
