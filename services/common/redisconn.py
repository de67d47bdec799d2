"""Redis clients of the services and the gateway, for either mode of PORTICO_REDIS_MODE:

- `standalone` (the default): PORTICO_REDIS_URL names the one server;
- `cluster`: PORTICO_REDIS_URL names a seed node of a Redis Cluster (any node: the client asks it
  for the others and for which primary serves which slot); the URL's user and password apply to
  every node, and the database must be 0, the only one a cluster has.

Every script of Portico touches the keys of one slot only (the hash tags of each key function
see to it), so the same scripts run in both modes.
"""

from __future__ import annotations

from typing import Literal

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

RedisMode = Literal["standalone", "cluster"]
MODES: tuple[RedisMode, ...] = ("standalone", "cluster")
AnyRedis = redis.Redis | RedisCluster
# What a failed call raises, in either mode (a cluster with a slot no node serves raises
# RedisClusterException, which is no RedisError). redis-py's asyncio connection also leaks
# AttributeError or TypeError from its transport when the connection is torn down under a
# command (redis/redis-py#4287; seen here when a cluster primary was killed under load): every
# `except FAILURES` wraps a client call and nothing else, so these count as Redis failing too.
FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError, AttributeError, TypeError)


def connect(url: str, *, mode: RedisMode, timeout: float | None,
            connect_timeout: float) -> AnyRedis:
    """A client that fails fast (no retries of its own: the callers decide what a failure
    means). `timeout` bounds each command (None: the caller bounds them)."""
    if mode == "cluster":
        db = parse_url(url).get("db", 0)
        if int(db or 0) != 0:
            raise ValueError("a Redis Cluster has database 0 only: drop the /N from the URL")
        # After a failover the client learns the new primary from the cluster: one retry lets a
        # command that met the dead one go to the new one once the map is refreshed.
        return RedisCluster.from_url(url, socket_timeout=timeout,
                                     socket_connect_timeout=connect_timeout,
                                     retry=Retry(NoBackoff(), 1))
    if mode != "standalone":
        raise ValueError(f"PORTICO_REDIS_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return redis.Redis.from_url(url, socket_timeout=timeout,
                                socket_connect_timeout=connect_timeout,
                                retry=Retry(NoBackoff(), 0))


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)
