"""A primary killed under load: its replica takes over (cluster-node-timeout 1000 ms), the
gateway's limiter decides on local buckets meanwhile, the cache steps aside, and no request gets
a 5xx. Prints what it measured: the cluster's failover time, the gateway's time until every
decision was a shared one again, and the share of fail-open (local) decisions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from gateway.policies.ratelimit import RateLimiter
from portico.product.v1 import product_pb2, product_pb2_grpc
from scripts.devstack.redis_cluster import ClusterNode, LocalRedisCluster
from tests.integration.gateway.conftest import gateway_client, grpc_server, settings_for
from tests.logrecords import Kept

DURATION, KILL_AT, WORKERS = 10.0, 1.5, 8


class Products(product_pb2_grpc.ProductServiceServicer):
    async def GetProduct(self, request, context):
        return product_pb2.GetProductResponse(product=product_pb2.Product(
            id=request.id, name="Failover", price="1.00", stock=1))


async def _promoted(replica: ClusterNode) -> float:
    """The monotonic time at which `replica` reports being a primary."""
    while "role:master" not in await asyncio.to_thread(replica.ask, "INFO", "replication"):
        await asyncio.sleep(0.05)
    return time.monotonic()


async def test_a_killed_primary_fails_over_without_5xx(tmp_path, signing_key, monkeypatch):
    kept = Kept()  # the gateway's logging does not propagate to pytest's capture
    logging.getLogger("portico.gateway.redis").addHandler(kept)
    decisions: list[tuple[float, str]] = []
    take = RateLimiter.take

    async def recorded(self, policy, key, read_along=()):  # type: ignore[no-untyped-def]
        decision = await take(self, policy, key, read_along)
        decisions.append((time.monotonic(), decision.backend if decision else "unavailable"))
        return decision

    monkeypatch.setattr(RateLimiter, "take", recorded)
    statuses: Counter[int] = Counter()
    with LocalRedisCluster(tmp_path / "cluster", node_timeout_ms=1000) as cluster:
        victim = cluster.primaries()[0]
        replica = cluster.replicas_of(victim)[0]
        async with grpc_server((product_pb2_grpc.add_ProductServiceServicer_to_server,
                                Products(), "portico.product.v1.ProductService")) as address:
            settings = settings_for(address, signing_key, cluster.url, redis_mode="cluster",
                                    trusted_proxies=["203.0.113.0/24"],
                                    rate_limit_rate=100_000, rate_limit_burst=100_000)
            async with gateway_client(settings) as http:
                started = time.monotonic()

                async def client(number: int) -> None:
                    sent = 0
                    while time.monotonic() - started < DURATION:
                        sent += 1
                        # Many clients and products: buckets and pages on every primary.
                        answer = await http.get(
                            f"/products/P{(number * 7 + sent) % 40}",
                            headers={"X-Forwarded-For": f"198.51.100.{(number * 31 + sent) % 250}"})
                        statuses[answer.status_code] += 1

                async def kill() -> tuple[float, float]:
                    await asyncio.sleep(KILL_AT)
                    killed = time.monotonic()
                    await asyncio.to_thread(victim.kill)
                    return killed, await asyncio.wait_for(_promoted(replica), 30)

                *_, (killed, promoted) = await asyncio.gather(
                    *(client(n) for n in range(WORKERS)), kill())
    logging.getLogger("portico.gateway.redis").removeHandler(kept)
    warnings = kept.records
    local = [at for at, backend in decisions if backend != "redis"]
    back = (max(local) - killed) if local else 0.0
    window = [backend for at, backend in decisions if killed <= at <= killed + back]
    print(f"\nfailover: replica promoted {promoted - killed:.2f} s after the kill; every "
          f"decision shared again {back:.2f} s after it; {len(decisions)} decisions in "
          f"{DURATION:.0f} s, {len(local)} fail-open ({len(local) / len(decisions):.1%} of all, "
          f"{len(local) / max(1, len(window)):.1%} of those in the failover window); "
          f"statuses {dict(statuses)}; outage warnings logged: {len(warnings)}")
    assert set(statuses) == {200}, statuses
    assert local, "the kill was never noticed"
    assert all(backend in ("redis", "local") for _, backend in decisions)
    assert max(local) < started + DURATION - 1, "the shared buckets did not come back"
    # At most one outage line per retry interval of the failover (a probe that reached a live
    # primary resumes the shared policies until a call meets the dead one again).
    assert 1 <= len(warnings) <= back / 0.5 + 2
