"""A Redis Cluster primary killed (SIGKILL) under load: readers of products through the load
balancer, customers placing orders (which change those products' stock, so their cached pages),
half of the products' cache generations on the killed primary's slots. Asserted: no 5xx, not at
the clients and not at the gateways; no stale read (a read that started after an order was
acknowledged shows its stock taken); the shared buckets come back. Measured: the failover time,
the share of fail-open decisions, how long until every decision was a shared one again.

Afterwards the killed node starts again (a replica now) and takes its primary role back
(CLUSTER FAILOVER), so the next tests find the cluster as it was."""

from __future__ import annotations

import asyncio
import time

from redis.crc import key_slot

from services.common.invalidation import item_generation_key
from tests.multihost.api import LOAD_SOURCES, total
from tests.multihost.client import http
from tests.multihost.edge import counters, delta
from tests.multihost.load import Log, StockWatch, place_order, stocks, until
from tests.multihost.stores import Node, slot_ranges

KILL_AT, DURATION, READERS = 3.0, 12.0, 6
SOURCES = LOAD_SOURCES[1:12]


def products_by_victim(products: list[str], victim: Node) -> tuple[list[str], list[str]]:
    ranges = slot_ranges(victim)
    on = [p for p in products if any(low <= key_slot(
        item_generation_key("product", p).encode()) <= high for low, high in ranges)]
    return on, [p for p in products if p not in on]


async def load(fleet, seeded, products: list[str], deadline: float):
    log = Log()
    async with http(fleet.lb.url, SOURCES[0]) as client:
        watch = StockWatch(await stocks(client, products))
    local: list[tuple[float, float]] = []

    async def reader(index: int) -> None:
        async with http(fleet.lb.url, SOURCES[1 + index]) as client:
            async def step() -> None:
                product = products[len(log.calls) % len(products)]
                started = time.monotonic()
                answer = await log.timed("read", client.get(f"/products/{product}"))
                if answer is not None:
                    watch.read(started, product, answer)
            await until(deadline, step)

    async def orderer(index: int, customer) -> None:
        async with http(fleet.lb.url, SOURCES[1 + READERS + index]) as client:
            async def step() -> None:
                product = products[(index + len(log.calls)) % len(products)]
                answer = await place_order(client, log, customer, product)
                if answer is not None and answer.status_code == 201:
                    watch.acknowledged(product)
            await until(deadline, step)

    async def poll_local() -> None:
        async def step() -> None:
            found = 0.0
            for url in fleet.gateway_urls.values():
                found += await total(url, "portico_rate_limit_decisions_total", SOURCES[-1],
                                     backend="local")
            local.append((time.monotonic(), found))
        await until(deadline, step, pause=0.25)

    await asyncio.gather(*(reader(i) for i in range(READERS)),
                         *(orderer(i, c) for i, c in enumerate(seeded.customers)),
                         poll_local())
    return log, watch, local


def wait_role(node: Node, role: str, timeout: float = 30) -> float:
    """Until `node` reports `role` (master, slave); the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while f"role:{role}" not in node.ask("INFO", "replication"):
        assert time.monotonic() < deadline, f"{node.address} not {role} within {timeout:g}s"
        time.sleep(0.05)
    return time.monotonic()


def test_a_killed_redis_primary_under_load(fleet, seeded) -> None:
    cluster, client = fleet.redis, fleet.client
    victim = cluster.primary_on(fleet.network["h1"])
    replica = cluster.replicas_of(victim)[0]
    on_victim, elsewhere = products_by_victim(seeded.products, victim)
    products = on_victim[:4] + elsewhere[:4]
    before = client.run(counters(fleet.gateway_urls, SOURCES[-1]))
    started = time.monotonic()
    running = client.start(load(fleet, seeded, products, started + DURATION))
    time.sleep(KILL_AT)
    killed = time.monotonic()
    victim.kill()
    promoted = wait_role(replica, "master")
    log, watch, local = running.result(DURATION + 60)
    edge = delta(client.run(counters(fleet.gateway_urls, SOURCES[-1])), before)
    try:
        rising = [at for (at, value), (_, earlier) in zip(local[1:], local) if value > earlier]
        decisions = edge["decisions_redis"] + edge["decisions_local"]
        stale = watch.stale()
        fleet.results.record("Redis primary killed under load", {
            "killed": f"{victim.address} (shard on h1), its replica {replica.address} (h2)",
            "products read and ordered": f"{len(on_victim[:4])} on the killed primary's slots, "
                                         f"{len(elsewhere[:4])} elsewhere",
            "failover_s (kill -> replica is primary)": promoted - killed,
            "shared_again_s (kill -> last local decision)": (max(rising) - killed)
            if rising else 0.0,
            "fail_open_share": edge["decisions_local"] / max(1.0, decisions),
            "decisions": decisions,
            "reads": dict(log.statuses("read")), "orders": dict(log.statuses("order")),
            "client_5xx_or_no_answer": len(log.failed()),
            "gateway_5xx": edge["answers_5xx"],
            "cache outcomes of reads": dict(watch.cache_outcomes()),
            "stale_reads": len(stale), "stale examples": stale[:3]})
        assert not log.failed(), log.failed()[:5]
        assert edge["answers_5xx"] == 0
        assert stale == []
        assert edge["decisions_local"] > 0, "the kill was never noticed"
        assert not rising or max(rising) < started + DURATION - 1, "shared buckets not back"
    finally:
        victim.start()        # back as a replica of the promoted one, then primary again
        cluster.wait_until_ok()
        victim.ask("CLUSTER", "FAILOVER")
        wait_role(victim, "master")
