"""A gateway drained and removed behind the load balancer under load: HAProxy's runtime API
puts h2's gateway in `drain` (no new requests; those in flight finish), then, once it has no
session left, in `maint`; the gateway gets SIGTERM and stops gracefully; the server is deleted
from the balancer. Readers, orders with an Idempotency-Key and orders without one (which nobody
may repeat) run meanwhile: not one fails.

Afterwards the gateway starts again and is added back (`add server`), for the next tests."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.multihost.api import LOAD_SOURCES, wait_ready
from tests.multihost.client import http
from tests.multihost.load import Log, place_order, until
from tests.multihost.processes import GATEWAY_PORT, PORTS

DRAIN_AT, DURATION, READERS = 2.0, 10.0, 4
SOURCES = LOAD_SOURCES[12:20]
NAME = "gateway-h2"


async def load(fleet, seeded, deadline: float) -> Log:
    log = Log()
    products = seeded.products[:8]

    async def reader(index: int) -> None:
        async with http(fleet.lb.url, SOURCES[index]) as client:
            async def step() -> None:
                product = products[len(log.calls) % len(products)]
                # Every other read past the cache: the call goes through to a service.
                headers = {"Cache-Control": "no-cache"} if len(log.calls) % 2 else {}
                await log.timed("read", client.get(f"/products/{product}", headers=headers))
            await until(deadline, step)

    async def orderer(index: int, customer, keyed: bool) -> None:
        async with http(fleet.lb.url, SOURCES[READERS + index]) as client:
            async def step() -> None:
                product = products[(index + len(log.calls)) % len(products)]
                await place_order(client, log, customer, product, key=None if keyed else "",
                                  kind="order keyed" if keyed else "order unkeyed")
            await until(deadline, step)

    await asyncio.gather(*(reader(i) for i in range(READERS)),
                         *(orderer(i, c, keyed=i % 2 == 0)
                           for i, c in enumerate(seeded.customers)))
    return log


def wait(condition, what: str, timeout: float = 15) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:g}s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_gateway_drained_and_removed(fleet, seeded) -> None:
    lb, gateway = fleet.lb, fleet.gateways["h2"]
    started = time.monotonic()
    running = fleet.client.start(load(fleet, seeded, started + DURATION))
    time.sleep(DRAIN_AT)
    served_before = int(lb.servers()[NAME]["stot"])
    lb.set_state(NAME, "drain")
    drained = time.monotonic()
    idle = wait(lambda: lb.servers()[NAME]["scur"] == "0", "no session left on the drained")
    served_during_drain = int(lb.servers()[NAME]["stot"]) - served_before
    lb.set_state(NAME, "maint")
    stopping, offset = time.monotonic(), gateway.log_path.stat().st_size
    code = gateway.stop(grace=20)
    stopped = time.monotonic()
    # uvicorn ends a graceful stop by raising the signal it caught again: -SIGTERM, once it
    # logged the end of its shutdown.
    graceful = code in (0, -signal.SIGTERM) and \
        "Finished server process" in gateway.log_path.read_text()[offset:]
    lb.remove(NAME)
    log = running.result(DURATION + 60)
    try:
        fleet.results.record("gateway drained and removed behind HAProxy", {
            "drained": f"{NAME} at {drained - started:.1f} s into {DURATION:.0f} s of load",
            "drain -> no session left_s": idle,
            "sessions started on it after drain": served_during_drain,
            "SIGTERM -> exited_s": stopped - stopping, "exit code": code,
            "graceful (shutdown completed in its log)": graceful,
            "requests": {kind: dict(log.statuses(kind)) for kind in
                         ("read", "order keyed", "order unkeyed")},
            "failed": len(log.failed())})
        assert not log.failed(), log.failed()[:5]
        assert set(log.statuses()) <= {200, 201}, log.statuses()
        assert graceful, f"the gateway did not stop gracefully (exit code {code})"
        assert NAME not in lb.servers()
    finally:
        restore(fleet)


def restore(fleet) -> None:
    """h2's gateway back: started again, ready, added to the balancer, up."""
    gateway = fleet.gateways["h2"]
    if not gateway.running:
        gateway.start()
    instances = {f"{fleet.network[h].address}:{port}" for h in ("h1", "h2", "h3")
                 for port in PORTS.values()}
    fleet.client.run(wait_ready([fleet.gateway_urls["h2"]], instances, LOAD_SOURCES[-1]))
    if NAME not in fleet.lb.servers():
        fleet.lb.add(NAME, f"{fleet.network['h2'].address}:{GATEWAY_PORT}")
    wait(lambda: NAME in fleet.lb.up(), "the gateway back in the balancer")
