"""A private Redis Cluster for the tests: six redis-server processes (three primaries, each
with one replica) on free loopback ports under one directory, joined with
`redis-cli --cluster create`.

The development stack (`portico up`) keeps its one standalone Redis; this is for the tests that
check Portico against a real cluster, failovers included. Every node asks for the same password
(primaries and replicas alike: a replica authenticates to its primary with it), and
`cluster-node-timeout` is short so that a killed primary is replaced within a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from scripts.devstack.redis_server import RedisServer
from scripts.devstack.servers import (
    LOCALHOST,
    EmbeddedServerError,
    find_executable,
    find_free_port,
    stored_password,
)


class ClusterNode(RedisServer):
    """One node: a RedisServer in cluster mode, with the cluster's password and a cluster bus
    port of its own (not port + 10000, which may be taken or past 65535)."""

    def __init__(self, data_dir: Path, *, password_file: Path, node_timeout_ms: int,
                 host: str = LOCALHOST, port: int | None = None,
                 bus_port: int | None = None) -> None:
        super().__init__(data_dir, port, host=host)
        self._password_file = password_file
        self.node_timeout_ms = node_timeout_ms
        self.bus_port = bus_port if bus_port is not None else find_free_port()

    @property
    def password(self) -> str:
        return stored_password(self._password_file)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _prepare(self) -> None:
        super()._prepare()
        with self._config_path.open("a") as config:
            config.write(f"masterauth {self.password}\n")

    def _command(self) -> list[str]:
        return [*super()._command(),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-port", str(self.bus_port)),
                *("--cluster-node-timeout", str(self.node_timeout_ms))]

    def kill(self) -> None:
        """SIGKILL, as a crashed machine would go: no goodbye to the cluster."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
        self.stop()

    def ask(self, *command: str) -> str:
        """One command through redis-cli, its answer as text ('' when the node is down)."""
        result = subprocess.run(
            [find_executable("redis-cli", "install the redis-tools package"),
             "-h", self.host, "-p", str(self.port), *command],
            env={**os.environ, "REDISCLI_AUTH": self.password}, capture_output=True, text=True,
            timeout=10, check=False)
        return result.stdout


class LocalRedisCluster:
    """`primaries` primaries with `replicas` replicas each, under `root`; a context manager
    that stops every node at the end, even when starting failed half-way."""

    def __init__(self, root: Path | str, *, primaries: int = 3, replicas: int = 1,
                 node_timeout_ms: int = 1000, start_timeout: float = 60.0) -> None:
        self.root = Path(root).absolute()
        self.start_timeout = start_timeout
        password_file = self.root / "password"
        self.nodes = [ClusterNode(self.root / f"node{index}", password_file=password_file,
                                  node_timeout_ms=node_timeout_ms)
                      for index in range(primaries * (1 + replicas))]
        self._replicas = replicas

    @property
    def password(self) -> str:
        return self.nodes[0].password

    @property
    def url(self) -> str:
        """A seed node's URL; clients discover the others from it."""
        return f"redis://:{self.password}@{self.nodes[0].address}/0"

    def start(self) -> Self:
        try:
            for node in self.nodes:
                node.start()
            self._create()
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _create(self) -> None:
        result = subprocess.run(
            [find_executable("redis-cli", "install the redis-tools package"), "--cluster",
             "create", *(node.address for node in self.nodes),
             "--cluster-replicas", str(self._replicas), "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": self.password}, capture_output=True, text=True,
            timeout=self.start_timeout, check=False)
        if result.returncode != 0:
            raise EmbeddedServerError(f"redis-cli --cluster create failed:\n{result.stdout}\n"
                                      f"{result.stderr}")

    def wait_until_ok(self, timeout: float | None = None) -> None:
        """Until every running node says the cluster is ok and knows every other node, and
        every replica is in sync with its primary (one that never was cannot take over)."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while time.monotonic() < deadline:
            running = [node for node in self.nodes if node.running]
            if all(self._ok(node, len(running)) for node in running):
                return
            time.sleep(0.1)
        raise EmbeddedServerError(f"the cluster under {self.root} did not become ok")

    @staticmethod
    def _ok(node: ClusterNode, known: int) -> bool:
        info = node.ask("CLUSTER", "INFO")
        if "cluster_state:ok" not in info or f"cluster_known_nodes:{known}" not in info:
            return False
        replication = node.ask("INFO", "replication")
        return "role:master" in replication or "master_link_status:up" in replication

    def primary_of(self, key: str) -> ClusterNode:
        """The running node that serves `key` now (as the cluster itself says)."""
        slot = self.nodes[0].ask("CLUSTER", "KEYSLOT", key).strip()
        for node in self.nodes:
            if node.running and _serves(node.ask("CLUSTER", "NODES"), int(slot)):
                return node
        raise LookupError(f"no running primary serves slot {slot}")

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        """The nodes that replicate `primary` now."""
        node_id = primary.ask("CLUSTER", "MYID").strip()
        return [node for node in self.nodes if node.running and node is not primary
                and f"master_host:{primary.host}" in (info := node.ask("INFO", "replication"))
                and f"master_port:{primary.port}" in info and node_id]

    def primaries(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running
                and "role:master" in node.ask("INFO", "replication")]


def _serves(nodes: str, slot: int) -> bool:
    """Whether the node whose CLUSTER NODES answer this is ('myself') is the primary of
    `slot`."""
    for line in nodes.splitlines():
        fields = line.split()
        if len(fields) < 8 or "myself" not in fields[2] or "master" not in fields[2]:
            continue
        for part in fields[8:]:
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return True
    return False

