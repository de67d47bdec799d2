"""The edge's one way to Redis, and the one owner of Redis health.

Every Redis call of the edge policies (the rate limiter's script, the cache's lookups and
fills) goes through one `RedisLink`: calls are batched into pipelines (batch.py), each bounded
by one timeout, and any failure (an error, a refused connection, a timeout) marks Redis down
for every policy at once. While Redis is down nobody waits for it: `run` answers None at once,
and the policies fall back on their own (per-process buckets, no cache). One request at a time
probes Redis again after `retry_interval`; when it is answered, every policy resumes, except that
the cache serves no entry for `settle_seconds` more: a write made during the outage left its
cache signal pending in its service (sent again every 0.5 s), and until it lands the entries it
ends still look current. An outage is logged once when it starts and once when it ends, and each
failure is counted in `portico_redis_errors_total` under the concern that met it.

On a Redis Cluster (PORTICO_REDIS_MODE=cluster) the link sends each call to the primary of its
first key's slot, batched per node (cluster.py); its health stays one notion for the whole
cluster: a failed node, or a cluster electing a new primary (which refuses every command with
CLUSTERDOWN meanwhile), sends every policy to its fallback until a probe is answered again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.metrics import REDIS_ERRORS, REDIS_UP
from gateway.policies.batch import RedisBatcher
from gateway.policies.cluster import ClusterBatcher, slot_of
from services.common.redisconn import FAILURES, AnyRedis, RedisMode, connect, is_cluster

log = logging.getLogger("portico.gateway.redis")

Script = Callable[[list[str], list[Any]], Any]


def redis_client(url: str, mode: RedisMode = "standalone") -> AnyRedis:
    """The client behind a link: bytes answers, a short connect timeout, no client-side
    retries (a slow Redis counts as down). No socket_timeout: redis-py would wrap every
    command in asyncio.wait_for; the batcher bounds each batch instead. In cluster mode the
    client only finds the nodes and their slots (and answers /readyz); calls go through the
    link's own batchers."""
    # The cluster client's own calls (the slot map, /readyz) are rare: a plain bound will do.
    return connect(url, mode=mode, timeout=None if mode == "standalone" else 1.0,
                   connect_timeout=0.5)


class RedisLink:
    """Batched Redis calls with one shared notion of whether Redis is usable."""

    def __init__(self, client: AnyRedis, *, timeout: float, retry_interval: float = 0.5,
                 settle_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if retry_interval <= 0 or settle_seconds < 0:
            raise ValueError("retry_interval must be positive, settle_seconds not negative")
        self.cluster = is_cluster(client)
        options = (client.nodes_manager.connection_kwargs if self.cluster
                   else client.connection_pool.connection_kwargs)
        if options.get("decode_responses"):
            raise ValueError("the edge reads bytes: give it a client without decode_responses")
        self._batcher: RedisBatcher | ClusterBatcher = (
            ClusterBatcher(client, timeout=timeout) if self.cluster
            else RedisBatcher(client, timeout=timeout))
        self.retry_interval = retry_interval
        self.settle_seconds = settle_seconds
        self._settled_at = 0.0
        self._clock = clock
        self._down = False
        self._retry_at = 0.0
        self._failures = 0  # failures so far: a call answered says "up" only if none came since
        REDIS_UP.set(1)

    @property
    def usable(self) -> bool:
        """True unless Redis is down and it is not yet time to try it again."""
        return not self._down or self._clock() >= self._retry_at

    @property
    def settled(self) -> bool:
        """True unless Redis is down or came back less than `settle_seconds` ago: whether a
        cache entry read now can be trusted to have seen every write acknowledged so far."""
        return not self._down and self._clock() >= self._settled_at

    def script(self, text: str) -> Script:
        """A Lua script to `run`; on a cluster, every key it is given must be of one slot."""
        return self._batcher.script(text)

    def slot(self, key: str) -> int:
        """The cluster slot of `key` (0 for every key on one server: they go together)."""
        return slot_of(key) if self.cluster else 0

    async def run(self, script: Script, keys: list[str], args: list[Any], *,
                  concern: str) -> Any | None:
        """The script's answer, or None when Redis is down or failed just now (then counted
        under `concern`)."""
        if self._down:
            now = self._clock()
            if now < self._retry_at:
                return None
            # This call probes Redis; the others keep off it until the probe is answered.
            self._retry_at = now + self.retry_interval
        failures = self._failures
        try:
            reply = await script(keys, args)
        except FAILURES as error:
            self.failed(error, concern=concern)
            return None
        # A call sent before a failure and answered after it (by another node of a cluster,
        # say) proves nothing about what failed: only one sent since, the probe, ends an outage.
        if failures == self._failures:
            self._answered()
        return reply

    def later(self, *args: Any, concern: str, on_done: Callable[[], None] | None = None) -> None:
        """A write whose answer nobody waits for (a cache fill): it rides in front of the next
        batch, or goes alone shortly after. A failure only counts against Redis health."""
        self._batcher.later(*args, on_error=lambda error: self.failed(error, concern=concern),
                            on_done=on_done)

    def failed(self, error: BaseException, *, concern: str) -> None:
        REDIS_ERRORS.labels(concern=concern).inc()
        self._failures += 1
        self._retry_at = self._clock() + self.retry_interval
        if not self._down:
            self._down = True
            REDIS_UP.set(0)
            log.warning("Redis is unavailable: rate limits fall back to this process, the "
                        "cache is bypassed; trying again every %s s", self.retry_interval,
                        extra={"error": f"{type(error).__name__}: {error}", "concern": concern})

    def _answered(self) -> None:
        if self._down:
            self._down = False
            self._retry_at = 0.0
            self._settled_at = self._clock() + self.settle_seconds
            REDIS_UP.set(1)
            log.info("Redis is available again: shared rate limits and the cache resume")

    async def close(self) -> None:
        """Sends the writes still queued, then closes the link's connection."""
        await self._batcher.close()
