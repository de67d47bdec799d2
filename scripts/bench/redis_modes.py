"""What one rate-limit decision costs the gateway's process on one Redis server and on a Redis
Cluster: the decision with a page's entry and generation and a token's two revocation keys read
along (as every cached GET with a token does), `--concurrency` at a time, against a private
redis-server and a private six-node cluster started here. Prints decisions/s, the client's CPU
per decision, and pipelines (round trips on a connection) per decision.

    .venv/bin/python -m scripts.bench.redis_modes [--decisions 20000] [--concurrency 32]

On a 2-core machine the cluster's six servers share the cores with the client, so the
cluster's figures include more context switches than a deployment's would.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from gateway.policies.batch import RedisBatcher
from gateway.policies.ratelimit import RateLimiter, RatePolicy
from gateway.policies.redis import RedisLink, redis_client
from scripts.devstack.redis_cluster import LocalRedisCluster
from scripts.devstack.redis_server import RedisServer
from services.common.invalidation import item_generation_key
from services.common.redisconn import RedisMode
from services.common.revocation import denied_key, valid_after_key

POLICY = RatePolicy("bench", rate=1e9, burst=10**9)


def _request(limiter: RateLimiter, number: int) -> tuple[str, tuple[str, ...]]:
    item, user = f"P{number % 500}", f"u{number % 300}"
    key = limiter.key(POLICY, peer=f"198.51.100.{number % 250}", forwarded_for=None,
                      subject=None)
    return key, (f"portico:cache:v1:{{product:{item}}}/products/{item}",
                 item_generation_key("product", item), valid_after_key(user),
                 denied_key(user, "jti"))


async def measure(url: str, mode: RedisMode, decisions: int, concurrency: int) -> str:
    client = redis_client(url, mode)
    link = RedisLink(client, timeout=2)
    limiter = RateLimiter(link, {"default": POLICY})
    pipelines = 0
    original = RedisBatcher._pipeline

    async def counted(self, batch):  # type: ignore[no-untyped-def]
        nonlocal pipelines
        pipelines += 1
        return await original(self, batch)

    async def worker(first: int) -> None:
        for number in range(first, decisions, concurrency):
            decision = await limiter.take(POLICY, *_request(limiter, number))
            assert decision is not None and decision.backend == "redis"

    await worker(0)  # warm: the slot map, the scripts, the connections
    RedisBatcher._pipeline = counted  # type: ignore[method-assign]
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(first) for first in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        RedisBatcher._pipeline = original  # type: ignore[method-assign]
        await link.close()
        await client.aclose()
    return (f"{mode:<10} {decisions / wall:>9,.0f} decisions/s  {cpu / decisions * 1e6:>5.0f} µs "
            f"CPU each  {pipelines / decisions:.2f} pipelines each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="portico-bench-redis-") as root, \
            RedisServer(f"{root}/one") as server, \
            LocalRedisCluster(f"{root}/cluster") as cluster:
        for _ in range(2):  # alternating, so a busy moment of the machine hits both
            for url, mode in ((server.url, "standalone"), (cluster.url, "cluster")):
                print(asyncio.run(measure(url, mode, options.decisions, options.concurrency)))


if __name__ == "__main__":
    main()
