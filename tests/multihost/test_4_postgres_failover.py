"""PostgreSQL primary failover under the order and user services of three hosts: the primary
(h1) stopped and the standby (h2, synchronous) promoted while customers place orders with
Idempotency-Keys through the load balancer, each repeating its key until it is answered.
Asserted: every key ends with exactly one confirmed order and one captured charge, none lost,
none duplicated, the stock taken once per key. Measured: the promotion, the longest time
without a committed write (a probe committing every 10 ms from the client machine through the
same multi-host URL the services use) and without an order placed.

The old primary stays stopped: the URL names it first, and a refused connection is passed over
at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import psycopg

from tests.multihost.api import LOAD_SOURCES
from tests.multihost.client import http
from tests.multihost.load import Log, place_order, stocks

ORDERS, WORKERS = 60, 4
SOURCES = LOAD_SOURCES[20:25]


def libpq_url(env: dict[str, str]) -> str:
    return env["PORTICO_DATABASE_URL"]


async def probe(url: str, commits: list[float]) -> None:
    """Commits one small write after another; reconnects (to whichever host takes writes)
    after a failure."""
    connection = None
    try:
        while True:
            try:
                if connection is None:
                    connection = await psycopg.AsyncConnection.connect(url, connect_timeout=2,
                                                                       autocommit=True)
                    await connection.execute("CREATE TABLE IF NOT EXISTS probe (at float8)")
                await connection.execute("INSERT INTO probe VALUES (%s)", (time.time(),))
                commits.append(time.monotonic())
            except psycopg.Error:
                if connection is not None:
                    await connection.close()
                connection = None
            await asyncio.sleep(0.01)
    finally:
        if connection is not None:
            await connection.close()


async def place_all(fleet, seeded, product: str, keys: list[str], log: Log,
                    placed: dict[str, float]) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)

    async def worker(index: int, customer) -> None:
        async with http(fleet.lb.url, SOURCES[index], timeout=30) as client:
            while not queue.empty():
                key = queue.get_nowait()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:   # as a client does: the same key again
                    answer = await place_order(client, log, customer, product, key=key)
                    if answer is not None and answer.status_code == 201:
                        placed[key] = time.monotonic()
                        break
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(worker(i, c) for i, c in enumerate(seeded.customers[:WORKERS])))


async def ledger(url: str, keys: list[str]) -> tuple[list[tuple], int]:
    """(key, status, count) of the orders of `keys`, and their captured charges."""
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=5) as connection:
        rows = await (await connection.execute(
            "SELECT idempotency_key, status, count(*) FROM orders "
            "WHERE idempotency_key = ANY(%s) GROUP BY 1, 2", (keys,))).fetchall()
        charges = await (await connection.execute(
            "SELECT count(*) FROM simulated_payments p JOIN orders o ON o.id = p.order_id "
            "WHERE o.idempotency_key = ANY(%s) AND p.status = 'captured'", (keys,))).fetchone()
    return [tuple(row) for row in rows], charges[0]


async def scenario(fleet, seeded, product: str, keys: list[str], stop_primary):
    log, placed, commits = Log(), {}, []
    async with http(fleet.lb.url, SOURCES[-1]) as client:
        stock_before = (await stocks(client, [product]))[product]
    probing = asyncio.create_task(probe(libpq_url(fleet.env), commits))
    placing = asyncio.create_task(place_all(fleet, seeded, product, keys, log, placed))
    for _ in range(600):   # a quarter of the orders placed, within a minute
        if len(placed) >= ORDERS // 4 or placing.done():
            break
        await asyncio.sleep(0.1)
    stopped, promoted = await asyncio.to_thread(stop_primary)
    await asyncio.wait_for(placing, 120)
    probing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probing
    async with http(fleet.lb.url, SOURCES[-1]) as client:
        stock_after = (await stocks(client, [product]))[product]
    rows, charges = await ledger(libpq_url(fleet.env), keys)
    return log, placed, commits, (stopped, promoted), stock_before - stock_after, rows, charges


def gap_around(times: list[float], moment: float) -> float:
    """The longest gap between consecutive times, among those around `moment`."""
    times = sorted(times)
    return max((b - a for a, b in zip(times, times[1:]) if b >= moment), default=0.0)


def test_postgres_primary_failover(fleet, seeded) -> None:
    product = seeded.products[20]
    keys = [f"pg-failover-{uuid.uuid4().hex}" for _ in range(ORDERS)]

    def stop_primary() -> tuple[float, float]:
        stopped = time.monotonic()
        fleet.primary.stop()
        fleet.standby.promote()
        return stopped, time.monotonic()

    log, placed, commits, (stopped, promoted), taken, rows, charges = fleet.client.run(
        scenario(fleet, seeded, product, keys, stop_primary), timeout=240)
    confirmed = {key: count for key, status, count in rows if status == "confirmed"}
    lost = [key for key in keys if key in placed and key not in confirmed]
    duplicated = [key for key, count in confirmed.items() if count > 1]
    fleet.results.record("PostgreSQL primary failover (h1 stopped, h2 promoted)", {
        "stop + promote_s": promoted - stopped,
        "longest without a committed write_s": gap_around(commits, stopped),
        "longest without an order placed_s": gap_around(list(placed.values()), stopped),
        "keys": ORDERS, "placed": len(placed),
        "tries the clients repeated": {str(k): v for k, v in log.statuses().items() if k != 201},
        "orders by status": {status: sum(c for _, s, c in rows if s == status)
                             for status in {s for _, s, _ in rows}},
        "lost": len(lost), "duplicated": len(duplicated), "captured charges": charges,
        "stock taken": taken})
    assert len(placed) == ORDERS, f"{ORDERS - len(placed)} keys never placed"
    assert not lost and not duplicated, (lost, duplicated)
    assert sorted(rows) == sorted((key, "confirmed", 1) for key in keys), rows
    assert charges == ORDERS
    assert taken == ORDERS
