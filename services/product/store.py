"""MongoDB storage of products and stock reservations: the only module that imports pymongo.

Stock moves by per-product hold markers instead of transactions (SecantusDB has none, and a
real MongoDB would need a replica set): reserving puts `holds.<reservation id>: quantity` on a
product in the same conditional `update_one` that takes the stock, and giving back removes the
marker in the same update that returns the stock. The marker is the guard, so each product's
stock moves at most once per reservation whatever the retries or the concurrency. The
reservation document's state changes by compare-and-set and is the one place that decides
which concurrent caller wins.

Replica sets (store_failover.py): the operations that are safe to repeat (reads, updates that
set values, and every stock move, guarded by its reservation's id and markers) are retried
through a step-down (`@retried`); creating and deleting a product are not (a repeated insert or
soft delete would answer ALREADY_EXISTS or NOT_FOUND for its own work) and rely on the driver's
retryable writes, which are exactly-once.

Deletion is soft: a deleted product keeps its document (with `deleted: true`) for audit and so
that late releases still find their hold markers; every read excludes it. Creating a product
with the id of a deleted one replaces the tombstone (holds and all), so a reused SKU starts
fresh and old reservations can never give stock to it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import ASCENDING, AsyncMongoClient, IndexModel, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.errors import AlreadyExists, FailedPrecondition, NotFound
from services.common.storeretry import StoreRetry, retried
from services.product.models import NewProduct, Product, ProductChanges, ReservedLine
from services.product.store_failover import mongo_retry, replica_set_client

PRODUCT_INDEXES = [
    # The name-filtered list: anchored prefix range on name_lower, then ids.
    IndexModel([("name_lower", ASCENDING), ("_id", ASCENDING)], name="name_lower_id"),
]
# Everything else reads by _id (products, reservations), which MongoDB always indexes.

# An update that lost a race with a restock is tried again this many times before the
# product is reported short.
_HOLD_ATTEMPTS = 3

StockItems = Sequence[tuple[str, int]]

def create_indexes(uri: str, database: str) -> None:
    """Creates every index, synchronously (the `portico migrate` path). Idempotent."""
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        client[database].products.create_indexes(PRODUCT_INDEXES)


class ProductStore:
    """Products and reservations in one MongoDB database, through the async pymongo API."""

    def __init__(self, db: AsyncDatabase, *, retry: StoreRetry | None = None) -> None:
        self._db = db
        self._products = db.products
        self._reservations = db.reservations
        self._owned_client: AsyncMongoClient | None = None
        self._retry = retry or mongo_retry()

    @classmethod
    def connect(cls, uri: str, database: str, *, server_selection_timeout: float = 5.0,
                retry_seconds: float = 5.0) -> ProductStore:
        """A store with its own client, closed by `close()`: replica-set ready (see above)."""
        client = replica_set_client(uri, server_selection_timeout=server_selection_timeout)
        store = cls(client[database], retry=mongo_retry(retry_seconds))
        store._owned_client = client
        return store

    async def close(self) -> None:
        if self._owned_client is not None:
            await self._owned_client.close()

    async def create_indexes(self) -> None:
        """Creates every index the queries below use. Idempotent."""
        await self._products.create_indexes(PRODUCT_INDEXES)

    # Catalogue

    async def create(self, new: NewProduct) -> Product:
        """Inserts a product; ALREADY_EXISTS when a live product has that id."""
        now = _now()
        doc = {
            "_id": new.id or uuid.uuid4().hex,
            "name": new.name, "name_lower": new.name.lower(), "description": new.description,
            "price_cents": new.price_cents, "stock": new.stock, "attributes": new.attributes,
            "created_at": now, "updated_at": now, "deleted": False, "holds": {},
        }
        try:
            await self._products.insert_one(doc)
        except DuplicateKeyError:
            # Taken, unless by a tombstone, which a new product may replace.
            replaced = await self._products.replace_one({"_id": doc["_id"], "deleted": True}, doc)
            if replaced.matched_count == 0:
                raise AlreadyExists(f"product {doc['_id']} already exists",
                                    resource=("product", doc["_id"])) from None
        return _product(doc)

    @retried
    async def get(self, product_id: str) -> Product:
        doc = await self._products.find_one({"_id": product_id, "deleted": False})
        if doc is None:
            raise _not_found(product_id)
        return _product(doc)

    @retried
    async def list_page(self, *, page_size: int, after: str | None = None,
                   name_prefix: str = "") -> tuple[list[Product], bool]:
        """One page ordered by id, after the id `after`; also says whether more follow."""
        query: dict = {"deleted": False}
        if after is not None:
            query["_id"] = {"$gt": after}
        if name_prefix:
            # Escaped and anchored: the filter is literal text and the index gives its range.
            query["name_lower"] = {"$regex": "^" + re.escape(name_prefix.lower())}
        cursor = self._products.find(query).sort("_id", ASCENDING).limit(page_size + 1)
        docs = await cursor.to_list()
        return [_product(doc) for doc in docs[:page_size]], len(docs) > page_size

    @retried
    async def update(self, product_id: str, changes: ProductChanges) -> Product:
        sets: dict = {"updated_at": _now()}
        if changes.name is not None:
            sets.update(name=changes.name, name_lower=changes.name.lower())
        for key in ("description", "price_cents", "stock", "attributes"):
            value = getattr(changes, key)
            if value is not None:
                sets[key] = value
        result = await self._products.update_one({"_id": product_id, "deleted": False},
                                                 {"$set": sets})
        if result.matched_count == 0:
            raise _not_found(product_id)
        return await self.get(product_id)

    async def delete(self, product_id: str) -> None:
        now = _now()
        result = await self._products.update_one(
            {"_id": product_id, "deleted": False},
            {"$set": {"deleted": True, "deleted_at": now, "updated_at": now}})
        if result.matched_count == 0:
            raise _not_found(product_id)

    # Reservations

    @retried
    async def reserve(self, reservation_id: str, items: StockItems) -> list[ReservedLine]:
        """Takes stock for every item or for none; repeating the call changes nothing."""
        wanted = sorted(items)
        doc = await self._open_reservation(reservation_id, wanted)
        if doc["state"] == "reserved":
            return _lines(doc)
        try:
            for product_id, quantity in wanted:
                await self._hold(reservation_id, product_id, quantity=quantity)
        except (NotFound, FailedPrecondition):
            if await self._transition(reservation_id, ("pending",), target="failed"):
                await self._drop_holds(reservation_id, wanted, give_back=True)
                raise
            return await self._settle(reservation_id, wanted)
        lines = await self._priced(wanted)
        if await self._transition(reservation_id, ("pending",), target="reserved",
                                  items=[_line_doc(line) for line in lines]):
            return lines
        return await self._settle(reservation_id, wanted)

    @retried
    async def release(self, reservation_id: str) -> tuple[bool, list[str]]:
        """Gives the stock back. Says whether this call closed the reservation (one caller
        among concurrent ones) and which products the reservation covers."""
        doc = await self._reservation(reservation_id)
        won = False
        if doc["state"] in ("pending", "reserved"):
            won = await self._transition(reservation_id, ("pending", "reserved"),
                                         target="released")
            if not won:
                doc = await self._reservation(reservation_id)
        if doc["state"] == "committed":
            raise FailedPrecondition(f"reservation {reservation_id} is committed",
                                     reason="RESERVATION_COMMITTED",
                                     metadata={"reservation_id": reservation_id})
        # Also run by the losers: it heals holds left by a caller that crashed half-way.
        items = _items(doc)
        await self._drop_holds(reservation_id, items, give_back=True)
        return won, [product_id for product_id, _ in items]

    @retried
    async def commit(self, reservation_id: str) -> bool:
        """Makes the reservation final; True only for the call that did it."""
        doc = await self._reservation(reservation_id)
        won = False
        if doc["state"] == "reserved":
            won = await self._transition(reservation_id, ("reserved",), target="committed")
            if not won:
                doc = await self._reservation(reservation_id)
        if doc["state"] not in ("reserved", "committed"):
            raise FailedPrecondition(f"reservation {reservation_id} is {doc['state']}",
                                     reason=f"RESERVATION_{doc['state'].upper()}",
                                     metadata={"reservation_id": reservation_id,
                                               "state": doc["state"]})
        await self._drop_holds(reservation_id, _items(doc), give_back=False)
        return won

    async def _open_reservation(self, reservation_id: str, wanted: StockItems) -> dict:
        """The reservation document, inserted as pending unless it exists already."""
        now = _now()
        doc = {"_id": reservation_id, "state": "pending", "created_at": now, "updated_at": now,
               "items": [{"product_id": p, "quantity": q} for p, q in wanted]}
        try:
            await self._reservations.insert_one(doc)
            return doc
        except DuplicateKeyError:
            doc = await self._reservation(reservation_id)
        if _items(doc) != list(wanted):
            raise AlreadyExists(
                f"reservation {reservation_id} exists with other items",
                reason="RESERVATION_MISMATCH", metadata={"reservation_id": reservation_id})
        if doc["state"] not in ("pending", "reserved"):
            raise _closed(reservation_id, doc["state"])
        return doc

    async def _hold(self, reservation_id: str, product_id: str, *, quantity: int) -> None:
        """Takes `quantity` off the product unless this reservation already holds it."""
        hold = f"holds.{reservation_id}"
        available = 0
        for _ in range(_HOLD_ATTEMPTS):
            result = await self._products.update_one(
                {"_id": product_id, "deleted": False, "stock": {"$gte": quantity},
                 hold: {"$exists": False}},
                {"$inc": {"stock": -quantity}, "$set": {hold: quantity, "updated_at": _now()}})
            if result.modified_count == 1:
                return
            doc = await self._products.find_one({"_id": product_id},
                                                {"stock": 1, "deleted": 1, hold: 1})
            if doc is None or doc["deleted"]:
                raise _not_found(product_id)
            if reservation_id in doc.get("holds", {}):
                return  # placed by an earlier or concurrent call with the same id
            available = doc["stock"]
            if available < quantity:
                break
        raise FailedPrecondition(
            f"not enough stock of product {product_id}", reason="OUT_OF_STOCK",
            metadata={"product_id": product_id, "requested": str(quantity),
                      "available": str(available)})

    async def _drop_holds(self, reservation_id: str, items: StockItems, *,
                          give_back: bool) -> None:
        """Removes this reservation's markers, returning their stock when `give_back`."""
        hold = f"holds.{reservation_id}"

        async def drop(product_id: str, quantity: int) -> None:
            update: dict = {"$unset": {hold: ""}}
            if give_back:
                update |= {"$inc": {"stock": quantity}, "$set": {"updated_at": _now()}}
            await self._products.update_one({"_id": product_id, hold: {"$exists": True}}, update)

        await asyncio.gather(*(drop(p, q) for p, q in items))

    async def _settle(self, reservation_id: str, wanted: StockItems) -> list[ReservedLine]:
        """After losing the state race: the winner's result, or undo what this call held."""
        doc = await self._reservation(reservation_id)
        if doc["state"] == "reserved":
            return _lines(doc)
        # Holds placed after the reservation closed belong to nobody: give them back.
        await self._drop_holds(reservation_id, wanted, give_back=True)
        raise _closed(reservation_id, doc["state"])

    async def _priced(self, wanted: StockItems) -> list[ReservedLine]:
        """The lines with each product's current name and price (reservation time)."""
        docs = self._products.find({"_id": {"$in": [p for p, _ in wanted]}},
                                   {"name": 1, "price_cents": 1})
        by_id = {doc["_id"]: doc async for doc in docs}
        return [ReservedLine(p, q, by_id[p]["price_cents"], by_id[p]["name"]) for p, q in wanted]

    async def _transition(self, reservation_id: str, sources: tuple[str, ...], *,
                          target: str, **sets: object) -> bool:
        """Compare-and-set of the reservation state; True when this call made the change."""
        result = await self._reservations.update_one(
            {"_id": reservation_id, "state": {"$in": list(sources)}},
            {"$set": {"state": target, "updated_at": _now(), **sets}})
        return result.modified_count == 1

    async def _reservation(self, reservation_id: str) -> dict:
        doc = await self._reservations.find_one({"_id": reservation_id})
        if doc is None:
            raise NotFound(f"reservation {reservation_id} not found",
                           resource=("reservation", reservation_id))
        return doc


def _now() -> datetime:
    # BSON dates keep milliseconds; truncating here makes a created product equal its reread.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _product(doc: dict) -> Product:
    return Product(
        id=doc["_id"], name=doc["name"], description=doc["description"],
        price_cents=doc["price_cents"], stock=doc["stock"], attributes=doc["attributes"],
        created_at=_aware(doc["created_at"]), updated_at=_aware(doc["updated_at"]))


def _aware(moment: datetime) -> datetime:
    # A client built without tz_aware hands back naive datetimes; BSON dates are always UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _items(doc: dict) -> list[tuple[str, int]]:
    return [(item["product_id"], item["quantity"]) for item in doc["items"]]


def _lines(doc: dict) -> list[ReservedLine]:
    return [ReservedLine(i["product_id"], i["quantity"], i["unit_price_cents"], i["name"])
            for i in doc["items"]]


def _line_doc(line: ReservedLine) -> dict:
    return {"product_id": line.product_id, "quantity": line.quantity,
            "unit_price_cents": line.unit_price_cents, "name": line.name}


def _not_found(product_id: str) -> NotFound:
    return NotFound(f"product {product_id} not found", resource=("product", product_id))


def _closed(reservation_id: str, state: str) -> FailedPrecondition:
    return FailedPrecondition(f"reservation {reservation_id} is {state}",
                              reason="RESERVATION_CLOSED",
                              metadata={"reservation_id": reservation_id, "state": state})
