"""The whole multi-host deployment, started and stopped as one (see topology.py for the network):

```
 h1 (.11, +.21)               h2 (.12)                     h3 (.13)
 gateway :8080                gateway :8080                gateway :8080
 user, product, order         user, product, order         user, product, order
 PostgreSQL primary :5432     PostgreSQL standby :5432
 SecantusDB :27017
 Redis shard 1 primary :7001  Redis shard 2 primary :7001  Redis shard 3 primary :7001
 Redis shard 3 replica :7002  Redis shard 1 replica :7002  Redis shard 2 replica :7002

 lb (.20): HAProxy :80 -> the three gateways     dns (.53): the test's DNS server :53
 client (.100, .101-.132): the test's checks and load
```

Every Portico process finds the services as `dns://10.199.73.53:53/<service>.portico.test:PORT`
(the gateways and the order services alike), PostgreSQL as both hosts with
`target_session_attrs=read-write`, Redis as the cluster through a seed node no test kills
(shard 2's primary). `start` undoes what it did when a step fails; `stop` is best effort in
every step, and the network's teardown kills whatever still runs in the namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

from services.common import pki
from services.common.jwtkeys import load_or_create_keys
from tests.dnsserver import DnsServer
from tests.multihost import processes
from tests.multihost.client import ClientLoop
from tests.multihost.loadbalancer import LoadBalancer
from tests.multihost.processes import GATEWAY_PORT, PORTS, PorticoProcess, service_name
from tests.multihost.stores import Primary, Secantus, SpreadCluster, Standby
from tests.multihost.topology import HOSTS, Network

ADMIN_EMAIL = "admin@portico.test"
ADMIN_PASSWORD = "multihost-admin-1"
DNS_PORT = 53
# Settings of every Portico process; the rate limits stay at their defaults (50/s, burst 100).
COMMON = {
    "PORTICO_REDIS_MODE": "cluster",
    "PORTICO_LOG_LEVEL": "INFO",
    "PORTICO_LOG_FORMAT": "json",
}
GATEWAY = {
    "PORTICO_ACCESS_LOG": "false",
    "PORTICO_HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
    "PORTICO_BREAKER_RESET_TIMEOUT_SECONDS": "2",
}
SERVICE = {
    "PORTICO_MAX_CONCURRENT_HASHES": "2",
    "PORTICO_GRACE_PERIOD_SECONDS": "2",
    "PORTICO_MONGODB_DATABASE": "portico",
}


class Fleet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.state = root / "state"
        self.network = Network()
        self.dns: DnsServer | None = None
        self.stores: list = []
        self.primary: Primary | None = None
        self.standby: Standby | None = None
        self.secantus: Secantus | None = None
        self.redis: SpreadCluster | None = None
        self.gateways: dict[str, PorticoProcess] = {}
        self.services: dict[str, PorticoProcess] = {}
        self.lb: LoadBalancer | None = None
        self.client: ClientLoop | None = None
        self.env: dict[str, str] = {}
        self.results = None   # the tier's Results, set by its fixture
        # PostgreSQL runs as `postgres` (as root), which must reach its data: not under
        # pytest's private temporary root.
        self._pg_root = Path(tempfile.mkdtemp(prefix="portico-multihost-pg-"))
        self._pg_root.chmod(0o755)

    @property
    def gateway_urls(self) -> dict[str, str]:
        return {host: f"http://{self.network[host].address}:{GATEWAY_PORT}" for host in HOSTS}

    # -- start --------------------------------------------------------------------------
    def start(self) -> Fleet:
        try:
            self.network.build()
            self._trust()
            self._dns()
            self._stores()
            self.env = self._environment()
            processes.migrate(self.network["h1"], {
                **self.env, "PORTICO_ADMIN_EMAIL": ADMIN_EMAIL,
                "PORTICO_ADMIN_PASSWORD": ADMIN_PASSWORD}, self.logs)
            for host in HOSTS:
                for name in PORTS:
                    self.add_service(name, host)
            for host in HOSTS:
                self.gateways[host] = processes.gateway(
                    self.network[host], {**self.env, **GATEWAY}, self.logs).start()
            self.lb = LoadBalancer(self.network["lb"], {
                f"gateway-{host}": f"{self.network[host].address}:{GATEWAY_PORT}"
                for host in HOSTS}, self.root / "lb").start()
            self.client = ClientLoop(self.network["client"].netns)
        except BaseException:
            self.stop()
            raise
        return self

    def _trust(self) -> None:
        """One development CA and JWT key pair for every host, made here once."""
        pki.ensure_ca(self.state)
        load_or_create_keys(SimpleNamespace(state_dir=self.state, jwt_private_key_file=None,
                                            jwt_public_key_file=None))

    def _dns(self) -> None:
        machine = self.network["dns"]
        # Made inside the namespace: its socket belongs there (a thread then serves it).
        self.dns = machine.netns.call(lambda: DnsServer(host=machine.address, port=DNS_PORT))
        self.dns.__enter__()
        for name in PORTS:
            self.dns.set(service_name(name), [self.network[h].address for h in HOSTS])

    def _stores(self) -> None:
        h1, h2, h3 = (self.network[h] for h in HOSTS)
        self.primary = Primary(h1, self._pg_root / "primary")
        self.stores.append(self.primary.start())
        self.standby = Standby(h2, self._pg_root / "standby", self.primary)
        self.stores.append(self.standby.start())
        self.primary.replicate_synchronously()
        self.secantus = Secantus(h1, self.root / "secantus")
        self.stores.append(self.secantus.start())
        # Shard n's primary on host n, its replica on the next host.
        self.redis = SpreadCluster(self.root / "redis", [(h1, h2), (h2, h3), (h3, h1)],
                                   seed=2)
        self.stores.append(self.redis.start())

    def _environment(self) -> dict[str, str]:
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(("PORTICO_", "OTEL_", "PROMETHEUS_"))}
        password = quote(self.primary.password, safe="")
        hosts = ",".join(f"{server.host}:{server.port}"
                         for server in (self.primary, self.standby))
        dns = f"dns://{self.network['dns'].address}:{DNS_PORT}"
        return {**base, **COMMON, **SERVICE,
                "PORTICO_STATE_DIR": str(self.state),
                "PORTICO_DATABASE_URL": f"postgresql://{self.primary.user}:{password}@{hosts}/"
                                        f"{self.primary.database}"
                                        "?target_session_attrs=read-write",
                "PORTICO_MONGODB_URI": self.secantus.url,
                "PORTICO_REDIS_URL": self.redis.url,
                "PORTICO_TRUSTED_PROXIES": f"{self.network['lb'].address}/32",
                **{f"PORTICO_{name.upper()}_ADDRS": f"{dns}/{service_name(name)}:{port}"
                   for name, port in PORTS.items()}}

    def add_service(self, name: str, host: str, *, address: str | None = None,
                    suffix: str = "") -> PorticoProcess:
        """Starts an instance of service `name` on `host` (on `address`, another of the
        host's addresses, when given)."""
        instance = processes.service(name, self.network[host], self.env, self.logs,
                                     host=address, suffix=suffix)
        self.services[instance.name] = instance.start()
        return instance

    # -- stop ---------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Everything down, in order (balancer, gateways, services, stores, DNS, network);
        what the network's sweep still found to remove."""
        steps = [lambda: self.client and self.client.close(),
                 lambda: self.lb and self.lb.stop(),
                 *(gateway.stop for gateway in self.gateways.values()),
                 *(service.stop for service in self.services.values()),
                 *(store.stop for store in reversed(self.stores)),
                 lambda: self.dns and self.dns.__exit__(None, None, None)]
        for step in steps:
            with contextlib.suppress(Exception):
                step()
        left = self.network.teardown()
        shutil.rmtree(self._pg_root, ignore_errors=True)
        return left

    def exited(self) -> list[str]:
        """Portico processes that exited without being asked to."""
        return [p.name for p in (*self.gateways.values(), *self.services.values())
                if p.exited() is not None]
