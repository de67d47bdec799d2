"""A real Redis Cluster for the session: six redis-server processes (three primaries, three
replicas) on free loopback ports under a temporary directory, stopped at the end even when a
test failed. A test that kills a node starts a cluster of its own (`LocalRedisCluster`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.policies.redis import RedisLink, redis_client
from scripts.devstack.redis_cluster import LocalRedisCluster
from services.common.redisconn import AnyRedis, connect
from tests.integration.gateway.conftest import signing_key  # noqa: F401 - a shared fixture


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    with LocalRedisCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_url(redis_cluster: LocalRedisCluster) -> str:
    """A seed node's URL (the others are found from it)."""
    return redis_cluster.url


@pytest.fixture
async def links(cluster_url: str) -> AsyncIterator:
    """`links()` makes an edge link to the cluster, as one gateway process has it."""
    made: list[tuple[RedisLink, AnyRedis]] = []

    def make(timeout: float = 1.0, **options: float) -> RedisLink:
        client = redis_client(cluster_url, "cluster")
        made.append((RedisLink(client, timeout=timeout, **options), client))
        return made[-1][0]

    yield make
    for link, client in made:
        await link.close()
        await client.aclose()


@pytest.fixture
async def cluster_client(cluster_url: str) -> AsyncIterator[AnyRedis]:
    """A cluster client as the services have one."""
    client = connect(cluster_url, mode="cluster", timeout=1.0, connect_timeout=1.0)
    yield client
    await client.aclose()
