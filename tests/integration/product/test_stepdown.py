"""The product store through a MongoDB primary step-down: SecantusDB's replSetStepDown (force)
makes the server a secondary for a few seconds, as a replica set's primary stepping down does
(writes refused with "not primary", no primary to select). With a short server selection
timeout the driver's own single retry gives up within the window; the store's bounded retry
then carries the operations that are safe to repeat through it, stock moved exactly once.
Creating a product is not repeated by the store. A private server: the window is server-wide."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pymongo
import pytest
import pytest_asyncio
from pymongo.errors import AutoReconnect

from scripts.devstack.secantus import SecantusServer
from services.product.models import NewProduct, ProductChanges
from services.product.store import ProductStore
from services.product.store_failover import is_transient

WINDOW = 2


@pytest.fixture(scope="module")
def secantus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer]:
    with SecantusServer(tmp_path_factory.mktemp("stepdown")) as server:
        yield server


@pytest_asyncio.fixture
async def store(secantus: SecantusServer) -> AsyncIterator[ProductStore]:
    opened = ProductStore.connect(secantus.url, "stepdown", server_selection_timeout=0.3,
                                  retry_seconds=WINDOW * 4)
    yield opened
    await opened.close()


def step_down(server: SecantusServer, seconds: int = WINDOW) -> float:
    with pymongo.MongoClient(server.url, directConnection=True) as client:
        client.admin.command({"replSetStepDown": seconds, "force": True})
    return time.monotonic()


async def test_the_client_is_replica_set_ready(store: ProductStore) -> None:
    options = store._owned_client.options
    assert options.write_concern.document == {"w": "majority"}
    assert options.retry_writes and options.retry_reads
    assert options.heartbeat_frequency == 1
    assert options.server_selection_timeout == 0.3


async def test_safe_operations_ride_out_a_step_down(store: ProductStore,
                                                    secantus: SecantusServer) -> None:
    await store.create(NewProduct("SD1", "Stepper", "", 100, 10))
    await store.create(NewProduct("SD2", "Stepper two", "", 100, 10))
    await store.reserve("before", [("SD2", 1)])
    started = step_down(secantus)
    reserved, updated, read, released, _ = await asyncio.gather(
        store.reserve("during", [("SD1", 3)]),
        store.update("SD1", ProductChanges(price_cents=150)),
        store.get("SD1"),
        store.release("before"),
        store.list_page(page_size=10))
    took = time.monotonic() - started
    print(f"\noperations through a {WINDOW}s step-down answered after {took:.2f}s")
    assert [line.quantity for line in reserved] == [3]
    assert updated.price_cents == 150 and read.id == "SD1"
    assert released == (True, ["SD2"])
    # Repeated tries moved the stock once.
    assert (await store.get("SD1")).stock == 7
    assert (await store.get("SD2")).stock == 10
    assert await store.reserve("during", [("SD1", 3)]) == reserved


async def test_a_create_is_not_repeated_by_the_store(store: ProductStore,
                                                     secantus: SecantusServer) -> None:
    await _primary_again(store)
    step_down(secantus)
    with pytest.raises(AutoReconnect) as refused:
        await store.create(NewProduct("SD3", "Not now", "", 100, 1))
    assert is_transient(refused.value)
    await _primary_again(store)


async def _primary_again(store: ProductStore) -> None:
    deadline = time.monotonic() + WINDOW * 4
    while True:
        try:
            await store.get("no-such-product")
        except AutoReconnect:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        except Exception:
            return
