"""PostgreSQL failover under the user and order services: their URL names a primary and its
standby (target_session_attrs=read-write); orders are placed with Idempotency-Keys while the
primary stops and the standby is promoted. Every key ends with exactly one confirmed order, one
charge and its stock taken once; none is lost. The stack is the order tests' (conftest.py), on
these two servers instead of the session's."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from scripts.devstack.servers import find_free_port
from services.common.db import async_engine
from services.common.settings import ServiceSettings
from tests.pgreplica import PrimaryServer, StandbyServer, failover_url

from .support import Stack, create_request, unique

ORDERS = 40
WORKERS = 4
QUANTITY = 2


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PrimaryServer, StandbyServer]]:
    # Not under pytest's temporary root: as root the servers run as `postgres` (see
    # tests/conftest.py, _postgres_data_dir).
    root = Path(tempfile.mkdtemp(prefix="portico-failover-"))
    root.chmod(0o755)
    try:
        with PrimaryServer(root / "primary") as primary:
            with StandbyServer(root / "standby", primary) as standby:
                primary.replicate_synchronously()
                yield primary, standby
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def base_settings(servers, mongo_uri: str, mongo_database_name: str, state_dir: Path,
                  redis_url: str) -> ServiceSettings:
    primary, standby = servers
    url = failover_url(primary, [primary.port, standby.port])
    return ServiceSettings(database_url=url, mongodb_uri=mongo_uri,
                           mongodb_database=mongo_database_name, redis_url=redis_url,
                           state_dir=state_dir, max_concurrent_hashes=16,
                           store_retry_seconds=15, order_pending_timeout_seconds=5,
                           reconcile_interval_seconds=1, upstream_timeout_seconds=20)


async def server_of(url: str) -> tuple[int, bool]:
    """(port, in recovery) of the server a URL connects to."""
    engine = async_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(text(
                "SELECT inet_server_port(), pg_is_in_recovery()"))).one()
        return row[0], row[1]
    finally:
        await engine.dispose()


async def test_a_url_of_several_hosts_connects_to_the_primary(servers) -> None:
    primary, standby = servers
    # The standby first in line: it is passed over, it takes no writes.
    url = failover_url(primary, [standby.port, primary.port])
    assert await server_of(url) == (primary.port, False)
    # A host that is down first in line.
    url = failover_url(primary, [find_free_port(), primary.port])
    assert await server_of(url) == (primary.port, False)


async def test_no_order_is_lost_or_duplicated_across_a_failover(stack: Stack, servers) -> None:
    primary, standby = servers
    customer = await stack.customer()
    product = await stack.product(stock=ORDERS * QUANTITY + 10)
    keys = [unique("failover") for _ in range(ORDERS)]
    done: dict[str, float] = {}
    failures: list[str] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)

    async def worker() -> None:
        while not queue.empty():
            key = queue.get_nowait()
            deadline = time.monotonic() + 60
            while True:
                try:
                    await stack.as_customer(customer).CreateOrder(
                        create_request(customer, [(product, QUANTITY)], key=key), timeout=30)
                    done[key] = time.monotonic()
                    break
                except grpc.aio.AioRpcError as error:
                    # As a client does: the same key again, until the order is placed.
                    failures.append(error.code().name)
                    assert time.monotonic() < deadline, f"{key} never placed: {failures}"
                    await asyncio.sleep(0.2)

    workers = [asyncio.create_task(worker()) for _ in range(WORKERS)]
    probe = WriteProbe(stack.settings.database_url)
    probing = asyncio.create_task(probe.run())
    while len(done) < ORDERS // 4:
        await asyncio.sleep(0.05)
    stopped = time.monotonic()
    await asyncio.to_thread(primary.stop)
    await asyncio.to_thread(standby.promote)
    promoted = time.monotonic()
    await asyncio.gather(*workers)
    probing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probing
    await probe.close()

    placed = sorted(done.values())
    print(f"\nprimary stopped and standby promoted in {promoted - stopped:.2f}s; "
          f"longest time without a commit {probe.longest_gap():.2f}s; longest time without "
          f"an order placed {max(b - a for a, b in zip(placed, placed[1:])):.2f}s; "
          f"failed tries the client repeated: {len(failures)} {sorted(set(failures))}")

    async with stack.engine.connect() as connection:
        rows = (await connection.execute(text(
            "SELECT idempotency_key, status, count(*) FROM orders WHERE customer = :customer "
            "AND idempotency_key IS NOT NULL GROUP BY 1, 2"), {"customer": customer})).all()
    assert sorted((key, status, count) for key, status, count in rows) == \
        sorted((key, "confirmed", 1) for key in keys)
    charges = await stack.charges(customer)
    assert charges.get("captured") == ORDERS
    # Tries given up meanwhile were failed, refunded and their stock released (the
    # reconciler finishes what a request could not).
    await _settled(stack, customer)
    assert await stack.stock(product) == 10


class WriteProbe:
    """Commits one small write after another through the failover URL; the longest gap
    between two commits is the time the database took no writes."""

    def __init__(self, url: str) -> None:
        self._engine = async_engine(url, pool_size=1)
        self.commits: list[float] = []

    async def run(self) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(text("CREATE TABLE IF NOT EXISTS probe (at float8)"))
        while True:
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(text("INSERT INTO probe VALUES (:at)"),
                                             {"at": time.time()})
                self.commits.append(time.monotonic())
            except Exception:   # the failover: try again shortly
                pass
            await asyncio.sleep(0.01)

    def longest_gap(self) -> float:
        return max(b - a for a, b in zip(self.commits, self.commits[1:]))

    async def close(self) -> None:
        await self._engine.dispose()


async def _settled(stack: Stack, customer: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while any(row["status"] in ("pending", "failed") and row["settled_at"] is None
              for row in await stack.order_rows(customer)):
        assert time.monotonic() < deadline, "failed tries not settled"
        await asyncio.sleep(0.2)

