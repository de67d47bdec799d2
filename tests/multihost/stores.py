"""The devstack's servers (scripts/devstack/) run inside a machine's namespace, bound to its
address: PostgreSQL primary and standby (tests/pgreplica.py), SecantusDB, and a Redis Cluster
whose six nodes are spread over the three hosts with every replica on another host than its
primary.

`InNamespace` is the only difference from the devstack's classes: every program a server runs
(the server itself, initdb, pg_basebackup, redis-cli) starts inside the namespace, and every
probe or admin connection the test makes to it is made from inside the namespace too, never
from the root namespace (where the tier's subnet is a blackhole).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from scripts.devstack.redis_cluster import ClusterNode, LocalRedisCluster
from scripts.devstack.secantus import SecantusServer
from scripts.devstack.servers import EmbeddedServerError, find_executable
from tests.multihost.namespaces import SUBNET
from tests.multihost.topology import Machine
from tests.pgreplica import PrimaryServer, StandbyServer


class InNamespace:
    """Mixin for an EmbeddedServer: its programs and its probes run in `machine`'s namespace,
    and it binds the machine's (first) address."""

    def __init__(self, machine: Machine, *args: Any, **kwargs: Any) -> None:
        self.machine = machine
        kwargs.setdefault("host", machine.address)
        super().__init__(*args, **kwargs)

    def _run(self, command: list[str]) -> subprocess.Popen[bytes]:
        account = getattr(self, "_account", None)   # PostgreSQL runs as `postgres` as root
        user = account.pw_name if account is not None else None
        return super()._run(self.machine.netns.command(command, user=user))

    def _spawn_options(self) -> dict[str, Any]:
        return {}   # the account is switched by setpriv, inside the namespace

    def _accepts_connections(self) -> bool:
        return self.machine.netns.call(super()._accepts_connections)

    def _on_ready(self) -> None:
        self.machine.netns.call(super()._on_ready)


class Primary(InNamespace, PrimaryServer):
    """The PostgreSQL primary: admits the subnet, replicates synchronously once its standby
    streams."""

    def __init__(self, machine: Machine, data_dir: Path, port: int = 5432) -> None:
        super().__init__(machine, data_dir, port=port, clients=[SUBNET])

    def replicate_synchronously(self, timeout: float = 30.0) -> None:
        self.machine.netns.call(super().replicate_synchronously, timeout)


class Standby(InNamespace, StandbyServer):
    """A streaming standby of `primary` on another machine (pg_basebackup over the subnet)."""

    def __init__(self, machine: Machine, data_dir: Path, primary: Primary,
                 port: int = 5432) -> None:
        super().__init__(machine, data_dir, primary, port=port, clients=[SUBNET])

    def promote(self) -> None:
        self.machine.netns.call(super().promote)


class Secantus(InNamespace, SecantusServer):
    def __init__(self, machine: Machine, data_dir: Path, port: int = 27017) -> None:
        super().__init__(machine, data_dir, port=port)


class Node(InNamespace, ClusterNode):
    """A Redis Cluster node on a machine."""

    def ask(self, *command: str) -> str:
        return self.machine.netns.call(super().ask, *command)


class SpreadCluster(LocalRedisCluster):
    """Three primaries and their replicas, placed by hand: `placement` is (primary's machine,
    replica's machine) per shard. Made with `redis-cli --cluster create` of the primaries, then
    `--cluster add-node ... --cluster-slave` for each replica, so no replica shares a host with
    its primary (the create command's own placement does not promise it)."""

    def __init__(self, root: Path, placement: list[tuple[Machine, Machine]], *,
                 node_timeout_ms: int = 1000, seed: int = 0) -> None:
        self.root = root.absolute()
        self.start_timeout = 60.0
        self._replicas = 1
        self._seed = seed
        password_file = self.root / "password"
        self.nodes: list[Node] = []
        for shard, machines in enumerate(placement):
            for role, machine in zip(("primary", "replica"), machines, strict=True):
                port = 7001 if role == "primary" else 7002
                self.nodes.append(Node(machine, self.root / f"shard{shard + 1}-{role}",
                                       password_file=password_file, port=port,
                                       bus_port=port + 10000, node_timeout_ms=node_timeout_ms))

    @property
    def url(self) -> str:
        """The seed node's URL (a node no test kills)."""
        return f"redis://:{self.password}@{self.nodes[self._seed].address}/0"

    def _create(self) -> None:
        primaries, replicas = self.nodes[0::2], self.nodes[1::2]
        self._cli("--cluster", "create", *(node.address for node in primaries),
                  "--cluster-replicas", "0", "--cluster-yes")
        for primary, replica in zip(primaries, replicas, strict=True):
            node_id = primary.ask("CLUSTER", "MYID").strip()
            self._cli("--cluster", "add-node", replica.address, primary.address,
                      "--cluster-slave", "--cluster-master-id", node_id)

    def _cli(self, *args: str) -> None:
        command = [find_executable("redis-cli", "install the redis-tools package"), *args]
        env = {**os.environ, "REDISCLI_AUTH": self.password}

        def run() -> subprocess.CompletedProcess[str]:
            return subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=self.start_timeout, check=False)

        result = self.nodes[0].machine.netns.call(run)
        if result.returncode != 0:
            raise EmbeddedServerError(f"redis-cli {' '.join(args)} failed:\n{result.stdout}\n"
                                      f"{result.stderr}")

    def primary_on(self, machine: Machine) -> Node:
        """The running primary on `machine`."""
        return next(node for node in self.primaries() if node.machine is machine)


def slot_ranges(node: Node) -> list[tuple[int, int]]:
    """The slots `node` serves as a primary now, from its own CLUSTER NODES line."""
    for line in node.ask("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if len(fields) >= 8 and "myself" in fields[2]:
            return [(int(low), int(high or low)) for low, _, high in
                    (part.partition("-") for part in fields[8:] if part[0].isdigit())]
    return []
