"""The edge's calls to a Redis Cluster: a RedisBatcher per primary, and each call sent to the
primary that serves the slot of its first key.

Batching stays what it is on one server, per node: calls to one node made while its batch is out
go together as its next pipeline, on its one connection, and the nodes' pipelines go out at
once, so a request whose keys live on three nodes waits for one round (the slowest node), not
three. Which node serves which slot comes from redis-py's cluster client (CLUSTER SLOTS, asked
of the seed node, then of any node it knows), refreshed in the background when a node fails or
answers MOVED: after a failover the next calls go to the promoted replica. Every script a call
runs must touch the keys of one slot (the key functions' hash tags see to it; Redis refuses
anything else with CROSSSLOT).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.policies.batch import RedisBatcher

# What a node's own client takes from the cluster client's settings: who we are, how we
# connect (TLS too), never the cluster client's extras.
_NODE_OPTIONS = ("username", "password", "credential_provider", "socket_connect_timeout",
                 "client_name")
Run = Callable[[RedisBatcher, bool], Awaitable[Any]]
# Failures after which the slot map may have changed (a primary died, the cluster is electing,
# the map we hold has a hole).
_NODE_FAILURES = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError,
                  TimeoutError, RedisClusterException)


def slot_of(key: str) -> int:
    """The hash slot of `key` (of its hash tag, when it has one)."""
    return key_slot(key.encode())


class ClusterBatcher:
    """RedisBatcher's `script`, `later` and `close`, over the primaries of a cluster."""

    def __init__(self, cluster: RedisCluster, *, timeout: float,
                 refresh_interval: float = 0.2) -> None:
        self._cluster = cluster
        self._timeout = timeout
        self._refresh_interval = refresh_interval
        self._nodes: dict[str, RedisBatcher] = {}
        self._clients: list[Redis] = []
        self._scripts: dict[tuple[str, str], Callable[..., Awaitable[Any]]] = {}
        self._ready = False
        self._refresh: asyncio.Task | None = None
        self._refreshed_at = float("-inf")

    def script(self, text: str) -> Callable[[list[str], list[Any]], Awaitable[Any]]:
        """A callable `(keys, args) -> answer` running `text` on the node of keys[0]."""

        async def run(keys: list[str], args: list[Any]) -> Any:
            async def on(batcher: RedisBatcher, asking: bool) -> Any:
                return await self._script_on(batcher, text)(keys, args, asking=asking)

            return await self._routed(keys[0], on)

        return run

    def later(self, *args: Any, on_error: Callable[[BaseException], None],
              on_done: Callable[[], None] | None = None) -> None:
        """A write nobody waits for, to the node of its key (args[1]). A slot that moved only
        costs this write (a missed fill), not a Redis failure."""
        try:
            node = self._node_now(args[1])
        except RedisClusterException:  # a slot no node serves now: the fill is dropped
            self._refresh_soon()
            node = None
        if node is None:  # (and with no map yet, which a fill after a lookup never meets)
            if on_done is not None:
                on_done()
            return

        def failed(error: BaseException) -> None:
            if isinstance(error, AskError):
                self._refresh_soon()
            else:
                on_error(error)

        self._batcher(node).later(*args, on_error=failed, on_done=on_done)

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        for batcher in self._nodes.values():
            await batcher.close()
        for client in self._clients:
            await client.aclose()

    async def _routed(self, key: str, run: Run) -> Any:
        try:
            if not self._ready:
                await self._cluster.initialize()
                self._ready = True
            batcher = self._batcher(self._cluster.nodes_manager.get_node_from_slot(slot_of(key)))
            return await run(batcher, False)
        except AskError as error:  # MOVED too: the slot is served elsewhere now
            self._refresh_soon()
            elsewhere = self._batcher(self._node_at(error.host, error.port))
            # ASK (a slot being migrated): this one command goes there, after ASKING.
            return await run(elsewhere, not isinstance(error, MovedError))
        except _NODE_FAILURES:
            self._refresh_soon()  # a dead primary: its replica may be promoted by now
            raise

    def _script_on(self, batcher: RedisBatcher, text: str) -> Callable[..., Awaitable[Any]]:
        key = (batcher.name, text)
        run = self._scripts.get(key)
        if run is None:
            run = self._scripts[key] = batcher.script(text)
        return run

    def _node_now(self, key: str) -> ClusterNode | None:
        if not self._ready:
            return None
        return self._cluster.nodes_manager.get_node_from_slot(slot_of(key))

    def _node_at(self, host: str, port: int | str) -> ClusterNode:
        manager = self._cluster.nodes_manager
        name = f"{host}:{port}"
        return manager.nodes_cache.get(name) or ClusterNode(host, int(port),
                                                            **manager.connection_kwargs)

    def _batcher(self, node: ClusterNode) -> RedisBatcher:
        batcher = self._nodes.get(node.name)
        if batcher is None:
            options = {name: value for name, value in node.connection_kwargs.items()
                       if name in _NODE_OPTIONS or name.startswith("ssl")}
            client = Redis(connection_pool=ConnectionPool(
                connection_class=node.connection_class, host=node.host, port=node.port,
                retry=Retry(NoBackoff(), 0), **options))
            self._clients.append(client)
            batcher = self._nodes[node.name] = RedisBatcher(client, timeout=self._timeout,
                                                            name=node.name)
        return batcher

    def _refresh_soon(self) -> None:
        """Asks the cluster for its slot map again, in the background, at most once per
        `refresh_interval` (a failover takes seconds; every failed call asking would not
        make it quicker)."""
        now = time.monotonic()
        if self._refresh is not None or now - self._refreshed_at < self._refresh_interval:
            return
        self._refreshed_at = now

        async def refresh() -> None:
            try:
                await self._cluster.nodes_manager.initialize()
            except Exception:  # noqa: BLE001 - the next failure asks again
                pass
            finally:
                self._refresh = None

        self._refresh = asyncio.ensure_future(refresh())
