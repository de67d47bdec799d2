"""The edge's Redis work against a real Redis Cluster: buckets shared and accurate across gateway
processes, a request's keys read in one round (one script per slot, the nodes asked at once),
the response cache never stale, and revoked tokens refused through the whole pipeline."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from gateway.errors import Problem
from gateway.policies.auth import Principal, checked, revocation_keys
from gateway.policies.batch import RedisBatcher
from gateway.policies.cache import ResponseCache
from gateway.policies.cluster import slot_of
from gateway.policies.ratelimit import RateLimiter, RatePolicy
from services.common.identity import Claims
from services.common.invalidation import CacheSignals, item_generation_key
from services.common.revocation import denied_key, valid_after_key
from tests.integration.test_cache_redis import Catalogue, Front, _product


def _policy(burst: int, rate: float) -> RatePolicy:
    return RatePolicy(f"t{uuid.uuid4().hex[:12]}", rate=rate, burst=burst)


async def test_limits_stay_accurate_across_two_gateways(links) -> None:
    policy = _policy(burst=20, rate=10.0)
    gateways = [RateLimiter(links(), {"default": policy}) for _ in range(2)]
    key = gateways[0].key(policy, peer="198.51.100.7", forwarded_for=None, subject=None)
    decisions = []

    async def client(limiter: RateLimiter) -> None:
        for _ in range(60):
            decisions.append(await limiter.take(policy, key))
            await asyncio.sleep(0.02)

    started = time.monotonic()
    await asyncio.gather(*(client(gateways[i % 2]) for i in range(4)))
    elapsed = time.monotonic() - started
    assert {d.backend for d in decisions} == {"redis"}
    admitted = sum(d.allowed for d in decisions)
    # 240 asked for in ~1.5 s: the burst, plus what the rate added meanwhile, and no more.
    assert 20 <= admitted <= 20 + 10 * elapsed
    assert admitted < len(decisions)


async def test_a_requests_keys_are_read_in_one_round(links, cluster_client, monkeypatch) -> None:
    """The bucket, a page's entry and generation, a user's revocation keys: three slots, one
    script each, every node asked once and all at the same time."""
    link = links()
    policy = _policy(burst=5, rate=1.0)
    limiter = RateLimiter(link, {"default": policy})
    key = limiter.key(policy, peer="198.51.100.8", forwarded_for=None, subject=None)
    item, user = await _on_the_other_primaries(cluster_client, key)
    entry = f"portico:cache:v1:{{product:{item}}}/products/{item}"
    read_along = (entry, item_generation_key("product", item), valid_after_key(user),
                  denied_key(user, "jti-1"))
    await cluster_client.set(item_generation_key("product", item), 7)
    await cluster_client.set(denied_key(user, "jti-1"), "1")
    assert len({slot_of(k) for k in (key, *read_along)}) == 3
    await limiter.take(policy, key, read_along)  # the map and the scripts are loaded
    pipelines: list[tuple[str, float, float]] = []
    original = RedisBatcher._pipeline

    async def timed(self, batch):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        try:
            return await original(self, batch)
        finally:
            pipelines.append((self.name, started, time.monotonic()))

    monkeypatch.setattr(RedisBatcher, "_pipeline", timed)
    decision = await limiter.take(policy, key, read_along)
    assert decision is not None and decision.backend == "redis" and decision.reads is not None
    assert decision.reads.values == (None, b"7", None, b"1")
    assert abs(decision.reads.now - time.time()) < 60
    nodes = [name for name, _, _ in pipelines]
    assert len(nodes) == len(set(nodes)) == 3  # one pipeline per node, no second round
    assert max(start for _, start, _ in pipelines) < min(end for _, _, end in pipelines)


async def _on_the_other_primaries(cluster_client, key: str) -> tuple[str, str]:
    """An item and a user whose keys live on the two primaries that do not hold `key`, one each
    (random ones share a node with it or each other seven times in nine)."""
    await cluster_client.initialize()
    primaries = {cluster_client.get_node_from_key(key).name}
    for _ in range(500):
        item, user = f"P-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
        found = {cluster_client.get_node_from_key(k).name
                 for k in (item_generation_key("product", item), valid_after_key(user))}
        if len(primaries | found) == 3:
            return item, user
    raise AssertionError("500 random items and users, none on the other two primaries")


async def test_a_write_signal_makes_the_next_get_miss(links, cluster_url) -> None:
    catalogue = Catalogue()
    product_id = _product(catalogue, "v1")
    signals = CacheSignals(cluster_url, mode="cluster")
    # Two gateway processes, each with its link: the signal reaches both.
    fronts = [Front(ResponseCache(links(), ttl=30, max_stale=60), catalogue) for _ in range(2)]
    try:
        for front in fronts:
            await front.get(f"/products/{product_id}")
            await front.get("/products?limit=5")
        await asyncio.sleep(0.05)  # the fills, written behind, have gone out
        assert [(await f.get(f"/products/{product_id}")).headers["x-cache"]
                for f in fronts] == ["HIT", "HIT"]
        catalogue.products[product_id]["name"] = "v2"
        added = _product(catalogue)
        await signals.changed("product", product_id, added)  # as the service does on writes
        # The first GET after the signal, through either gateway, shows the new data (one
        # misses, the other may then hit what the first filled: it is the new data too).
        for front in fronts:
            item = await front.get(f"/products/{product_id}")
            listing = await front.get("/products?limit=5")
            assert item.json()["name"] == "v2"
            assert listing.json() == sorted([product_id, added])
    finally:
        await signals.close()


async def test_a_write_during_the_upstream_call_leaves_nothing_to_serve(
        links, cluster_url) -> None:
    catalogue = Catalogue()
    product_id = _product(catalogue, "v1")
    signals = CacheSignals(cluster_url, mode="cluster")

    async def write_after_the_read(changed_id: str) -> None:
        catalogue.during = None
        catalogue.products[changed_id] = {**catalogue.products[changed_id], "name": "v2"}
        await signals.changed("product", changed_id)

    catalogue.during = write_after_the_read
    client = Front(ResponseCache(links(), ttl=30, max_stale=60), catalogue)
    try:
        raced = await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.05)
        after = await client.get(f"/products/{product_id}")
        await asyncio.sleep(0.05)
        again = await client.get(f"/products/{product_id}")
    finally:
        await signals.close()
    assert (raced.headers["x-cache"], raced.json()["name"]) == ("MISS", "v1")
    assert (after.headers["x-cache"], after.json()["name"]) == ("MISS", "v2")
    assert (again.headers["x-cache"], again.json()["name"]) == ("HIT", "v2")
    assert catalogue.calls[product_id] == 2


async def test_revocation_keys_are_read_along_on_a_cluster(links, cluster_client) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    claims = Claims(subject=user, role="customer", issued_at=time.time() - 5,
                    expires_at=time.time() + 600, token_id="jti-9")
    principal = Principal(claims, "token")
    policy = _policy(burst=5, rate=1.0)
    limiter = RateLimiter(links(), {"default": policy})
    key = limiter.key(policy, peer="198.51.100.9", forwarded_for=None, subject=None)
    keys = revocation_keys(principal)
    fine = await limiter.take(policy, key, keys)
    assert checked(principal, fine.reads.values).verified
    await cluster_client.set(denied_key(user, "jti-9"), "1")
    refused = await limiter.take(policy, key, keys)
    with pytest.raises(Problem) as caught:
        checked(principal, refused.reads.values)
    assert (caught.value.status, caught.value.code) == (401, "TOKEN_REVOKED")


async def test_a_call_sent_to_the_wrong_node_follows_moved(links, cluster_client) -> None:
    """As after a resharding or a failover the link has not heard of yet: the node answers
    MOVED, the call is asked again where the slot went, and the map is refreshed."""
    link = links()
    item = f"M-{uuid.uuid4().hex[:8]}"
    key = item_generation_key("product", item)
    await cluster_client.set(key, 5)
    read = link.script("return redis.call('GET', KEYS[1])")
    assert await link.run(read, [key], [], concern="cache") == b"5"
    manager = link._batcher._cluster.nodes_manager  # the map the link routes by
    right = manager.slots_cache[slot_of(key)]
    wrong = next(nodes for nodes in manager.slots_cache.values() if nodes[0] != right[0])
    manager.slots_cache[slot_of(key)] = wrong
    assert await link.run(read, [key], [], concern="cache") == b"5"
    assert link.usable
    for _ in range(50):  # the refresh, in the background, puts the slot back
        if manager.slots_cache[slot_of(key)][0] == right[0]:
            break
        await asyncio.sleep(0.02)
    assert manager.slots_cache[slot_of(key)][0] == right[0]
