"""A whole host cut off under load: h3 (a gateway, an instance of each service, two Redis nodes,
one of them a primary) loses its network (`ip link set down` on its bridge port: a silent black
hole, no reset). Replacement instances of the three services already run on h1's second
address, unnamed; at the cut the DNS answers change (h3 out, the replacements in), as an
orchestrator would do. Readers and customers placing orders with Idempotency-Keys go on through
the load balancer. Asserted: at most 1% of reads fail, no keyed order fails, and within 3 s of
the DNS change each live gateway has the new instances in its pool, healthy, and reads arrive
at the new product instance."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

from tests.multihost.api import LOAD_SOURCES, healthy_instances
from tests.multihost.client import http
from tests.multihost.load import Log, place_order, until
from tests.multihost.processes import PORTS, service_name
from tests.multihost.topology import SPARE

CUT_AT, DURATION, READERS = 3.0, 14.0, 6
SOURCES = LOAD_SOURCES[25:40]
LIVE = ("h1", "h2")


async def load(fleet, seeded, deadline: float) -> Log:
    log = Log()
    products = seeded.products[:12]

    async def reader(index: int) -> None:
        async with http(fleet.lb.url, SOURCES[index], timeout=30) as client:
            async def step() -> None:
                product = products[len(log.calls) % len(products)]
                headers = {"Cache-Control": "no-cache"} if len(log.calls) % 2 else {}
                await log.timed("read", client.get(f"/products/{product}", headers=headers))
            await until(deadline, step, pause=0.02)   # under 50/s, one client's rate

    async def orderer(index: int, customer) -> None:
        async with http(fleet.lb.url, SOURCES[READERS + index], timeout=30) as client:
            async def step() -> None:
                product = products[(index + len(log.calls)) % len(products)]
                await place_order(client, log, customer, product, kind="order keyed")
            await until(deadline, step)

    await asyncio.gather(*(reader(i) for i in range(READERS)),
                         *(orderer(i, c) for i, c in enumerate(seeded.customers)))
    return log


async def found(fleet, instance: str, since: float, timeout: float = 10
                ) -> dict[str, float | None]:
    """For each live gateway, seconds from `since` until `instance` is in its pool, healthy."""
    seen: dict[str, float | None] = dict.fromkeys(LIVE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and None in seen.values():
        for host in LIVE:
            if seen[host] is None and instance in await healthy_instances(
                    fleet.gateway_urls[host], SOURCES[-1]):
                seen[host] = time.monotonic() - since
        await asyncio.sleep(0.1)
    return seen


def first_call(process, since: float) -> float | None:
    """Seconds from `since` (wall clock) until the first call arrived at `process`, from its
    log (each call is logged when it ends, with its duration)."""
    starts = []
    for line in process.log_path.read_text().splitlines():
        if '"message":"rpc"' not in line or "/grpc." in line:   # health checks aside
            continue
        record = json.loads(line)
        ended = datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()
        starts.append(ended - record["duration_ms"] / 1000)
    return min(starts) - since if starts else None


def test_a_host_cut_off_under_load(fleet, seeded) -> None:
    network, dns, client = fleet.network, fleet.dns, fleet.client
    spares = {name: fleet.add_service(name, "h1", address=SPARE, suffix="-spare")
              for name in PORTS}
    spare_instances = {name: f"{SPARE}:{port}" for name, port in PORTS.items()}
    client.run(ready_spares(fleet, spare_instances))
    started = time.monotonic()
    running = client.start(load(fleet, seeded, started + DURATION))
    time.sleep(CUT_AT)
    cut = time.monotonic()
    network.cut("h3")
    for name in PORTS:   # the orchestrator's part: the lost host out, the replacement in
        dns.set(service_name(name), [network["h1"].address, network["h2"].address, SPARE])
    changed, changed_wall = time.monotonic(), time.time()
    finding = {name: client.start(found(fleet, spare_instances[name], changed))
               for name in ("product", "order")}
    lb_down = wait_down(fleet, "gateway-h3", cut)
    pools = {name: future.result(30) for name, future in finding.items()}
    log = running.result(DURATION + 90)
    arrived = {name: first_call(spares[name], changed_wall) for name in ("product", "order")}
    reads, orders = log.of("read"), log.of("order keyed")
    failed_reads, failed_orders = log.failed("read"), log.failed("order keyed")
    after = [c for c in reads if c.started >= cut]
    fleet.results.record("host h3 cut off (ip link set down on its bridge port)", {
        "reads": len(reads), "failed reads": len(failed_reads),
        "failed read share": len(failed_reads) / max(1, len(reads)),
        "read statuses": dict(log.statuses("read")),
        "slowest read after the cut_s": max((c.ended - c.started for c in after), default=0),
        "keyed orders": len(orders), "failed keyed orders": len(failed_orders),
        "order statuses": dict(log.statuses("order keyed")),
        "failures (kind, status, detail, s after cut)": [
            (c.kind, c.status, c.detail, round(c.started - cut, 2))
            for c in (failed_reads + failed_orders)[:8]],
        "balancer took gateway-h3 out_s": lb_down,
        "DNS change -> new instance healthy in each live gateway's pool_s": pools,
        "DNS change -> first call arrived at the new instance_s": arrived,
        "spares": ", ".join(p.name for p in spares.values())})
    assert len(failed_reads) <= 0.01 * len(reads), failed_reads[:5]
    assert not failed_orders, failed_orders[:5]
    # Found through DNS by every live gateway within 3 s, and taking the steady read traffic.
    # The new order instance's first call is printed, not asserted: it waits for the next
    # order, and orders stall while the live order services' calls to the lost host's user and
    # product instances hang until keepalive ends them (2-6 s in the runs so far).
    for seconds in (*pools["product"].values(), *pools["order"].values(), arrived["product"]):
        assert seconds is not None and seconds <= 3.0, (pools, arrived)


async def ready_spares(fleet, instances: dict[str, str], timeout: float = 60) -> None:
    """Until the spare instances listen (a TCP connect from the client machine)."""
    deadline = time.monotonic() + timeout
    for address in instances.values():
        host, port = address.rsplit(":", 1)
        while True:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
                writer.close()
                break
            except (OSError, TimeoutError):
                assert time.monotonic() < deadline, f"{address} never listened"
                await asyncio.sleep(0.2)


def wait_down(fleet, server: str, since: float, timeout: float = 15) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fleet.lb.servers()[server]["status"].startswith("DOWN"):
            return time.monotonic() - since
        time.sleep(0.05)
    return None
