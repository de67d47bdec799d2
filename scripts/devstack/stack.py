"""`portico up`: the whole stack as child processes of one foreground command.

Databases come from PORTICO_DATABASE_URL / PORTICO_REDIS_URL / PORTICO_MONGODB_URI when set;
otherwise private PostgreSQL, Redis and SecantusDB servers run with their data under the state
directory (.portico/), so the next `portico up` finds the same data; PostgreSQL and Redis ask for
a password made once there. The development CA is made there too (state/pki/), unless the
PORTICO_MTLS_* settings name the operator's files: every internal hop is mutual TLS. Then the
schemas are migrated, N instances of each service start, then the gateway; `Stack.start` returns
once
/readyz answers 200. `Stack.stop` (Ctrl-C or SIGTERM in `portico up`) stops the gateway first,
then the services (each drains its calls), then the databases, and leaves no child behind.
The end-to-end tests run the same Stack on free ports.
"""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from scripts.devstack.access import stack_tls, summary, write_env_file
from scripts.devstack.postgres import PostgresServer
from scripts.devstack.redis_server import RedisServer
from scripts.devstack.secantus import SecantusServer
from scripts.devstack.servers import EmbeddedServer, die_with_parent, find_free_port
from services.common import pki
from services.common.mtls import channel_credentials

SERVICES = ("user", "product", "order")
DEFAULT_BASE_PORTS = {"user": 50051, "product": 50061, "order": 50071}


@dataclass
class StackConfig:
    """What to run and where. Ports of 0 mean "any free port" (the tests)."""

    state_dir: Path = Path(".portico")
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_workers: int = 1
    instances: int = 2
    base_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BASE_PORTS))
    database_url: str | None = None
    redis_url: str | None = None
    mongodb_uri: str | None = None
    env: dict[str, str] = field(default_factory=dict)   # extra PORTICO_* settings
    log_dir: Path | None = None    # child output to files here (default: this terminal)
    fast_databases: bool = False   # no fsync: for tests only


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log: IO[bytes] | None
    process: subprocess.Popen | None = None


class Stack:
    """Databases, migrated schemas, service instances and the gateway, started and stopped
    as one."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.databases: list[EmbeddedServer] = []
        self.children: dict[str, Child] = {}
        self.addresses: dict[str, list[str]] = {}
        self.gateway_url = ""
        self.env: dict[str, str] = {}
        self.tls: pki.TlsMaterial | None = None   # the stack's own, for its health checks

    # -- start --------------------------------------------------------------------------
    def start(self, *, timeout: float = 120.0) -> Stack:
        try:
            urls = self._databases()
            self.env = env = self._environment(urls)
            self.tls = self.identity("devstack")
            write_env_file(env)
            self._migrate(env)
            for name in SERVICES:
                for index, address in enumerate(self.addresses[name]):
                    port = address.rsplit(":", 1)[1]
                    self._spawn(f"{name}-{index + 1}", ["service", name, "--port", port,
                                                        "--host", self.config.host], env)
            self._wait_for_services(timeout)
            self._spawn("gateway", ["--host", self.config.host, "--port",
                                    str(self._gateway_port), "--workers",
                                    str(self.config.gateway_workers)], env)
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _databases(self) -> dict[str, str]:
        config, state = self.config, self.config.state_dir.resolve()
        urls = {"DATABASE_URL": config.database_url or os.environ.get("PORTICO_DATABASE_URL"),
                "REDIS_URL": config.redis_url or os.environ.get("PORTICO_REDIS_URL"),
                "MONGODB_URI": config.mongodb_uri or os.environ.get("PORTICO_MONGODB_URI")}
        if not urls["REDIS_URL"] and os.environ.get("PORTICO_REDIS_MODE") == "cluster":
            # The embedded Redis is one standalone server: a cluster is the operator's own.
            raise SystemExit("PORTICO_REDIS_MODE=cluster needs PORTICO_REDIS_URL naming a node "
                             "of your Redis Cluster (the embedded Redis is standalone)")
        embedded = {
            "DATABASE_URL": lambda: PostgresServer(state / "postgres", fast=config.fast_databases),
            "REDIS_URL": lambda: RedisServer(state / "redis", persistent=True),
            "MONGODB_URI": lambda: SecantusServer(state / "mongodb"),
        }
        for key, make in embedded.items():
            if not urls[key]:
                server = make().start()
                self.databases.append(server)
                urls[key] = server.url
        return urls

    def _environment(self, urls: dict[str, str]) -> dict[str, str]:
        config = self.config
        for name in SERVICES:
            base = config.base_ports[name]
            self.addresses[name] = [
                f"{config.host}:{base + i if base else find_free_port()}"
                for i in range(config.instances)]
        self._gateway_port = config.gateway_port or find_free_port()
        scheme = "https" if "PORTICO_TLS_CERT_FILE" in config.env else "http"
        self.gateway_url = f"{scheme}://{config.host}:{self._gateway_port}"
        env = {**os.environ, **config.env,
               **{f"PORTICO_{key}": value for key, value in urls.items()},
               "PORTICO_STATE_DIR": str(config.state_dir.resolve())}
        for name in SERVICES:
            env[f"PORTICO_{name.upper()}_ADDRS"] = ",".join(self.addresses[name])
        return env

    def _migrate(self, env: dict[str, str]) -> None:
        subprocess.run([sys.executable, "-m", "services.cli", "migrate"], env=env, check=True,
                       stdout=self._log("migrate"), stderr=subprocess.STDOUT)

    def add_gateway(self, name: str, env: dict[str, str], *, timeout: float = 60.0) -> str:
        """Another gateway process (`name` starts with "gateway"), beside the stack's, on a
        free port, with `env` over the stack's settings (the benchmark's and the tests' tracing
        settings); its URL, once its /readyz answers 200. `stop` stops it with the others."""
        if not name.startswith("gateway"):
            raise ValueError("a gateway's name starts with 'gateway'")
        port = find_free_port()
        self._spawn(name, ["--host", self.config.host, "--port", str(port), "--workers", "1"],
                    {**self.env, **env})
        url = f"http://{self.config.host}:{port}"
        self._wait_until_ready(timeout, url)
        return url

    def add_service(self, service: str, name: str, env: dict[str, str], *,
                    timeout: float = 60.0) -> str:
        """Another instance of `service`, not among the stack's addresses (so neither the
        stack's gateway nor its order service calls it), with `env` over the stack's
        settings; its address, once it answers SERVING."""
        address = f"{self.config.host}:{find_free_port()}"
        self._spawn(name, ["service", service, "--port", address.rsplit(":", 1)[1],
                           "--host", self.config.host], {**self.env, **env})
        self._wait_for_services(timeout, only={service: [address]})
        return address

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        program = ["gateway"] if name.startswith("gateway") else ["services.cli"]
        child = Child(name, [sys.executable, "-m", *program, *args], env, self._log(name))
        child.process = subprocess.Popen(
            child.command, env=env, stdout=child.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent())
        self.children[name] = child

    def _log(self, name: str) -> IO[bytes] | None:
        if self.config.log_dir is None:
            return None
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.config.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (kept open)

    def _wait_for_services(self, timeout: float,
                           only: dict[str, list[str]] | None = None) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        for name, addresses in (only or self.addresses).items():
            for address in addresses:
                credentials = channel_credentials(self.tls)
                with grpc.secure_channel(address, credentials) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    while True:
                        self._check_alive()
                        try:
                            if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status \
                                    == health_pb2.HealthCheckResponse.SERVING:
                                break
                        except grpc.RpcError:
                            pass
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{name} at {address} did not start")
                        time.sleep(0.1)

    def _wait_until_ready(self, timeout: float, url: str | None = None) -> None:
        url = url or self.gateway_url
        deadline = time.monotonic() + timeout
        while readiness(url) != 200:
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway at {url} did not become ready")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        for child in self.children.values():
            if child.process is not None and child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}"
                                   + (f"; see {self.config.log_dir}/{child.name}.log"
                                      if self.config.log_dir else ""))

    def identity(self, name: str) -> pki.TlsMaterial:
        """A certificate of workload `name` for a program that calls the stack's services."""
        return stack_tls(self.env, name)

    # -- running ------------------------------------------------------------------------
    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stops one child abruptly (tests of failover)."""
        process = self.children[name].process
        process.send_signal(sig)
        process.wait(timeout=30)

    def restart(self, name: str) -> None:
        """Starts a stopped child again with the same command and port."""
        child = self.children[name]
        child.process = subprocess.Popen(
            child.command, env=child.env, stdout=child.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent())

    def exited(self) -> list[str]:
        return [c.name for c in self.children.values()
                if c.process is not None and c.process.poll() is not None]

    # -- stop ---------------------------------------------------------------------------
    def stop(self, *, grace: float = 15.0) -> None:
        """Gateway first (no new work), then the services (they drain), then the databases."""
        gateways = [c for c in self.children.values() if c.name.startswith("gateway")]
        order = gateways + [c for c in self.children.values() if c not in gateways]
        for group in (order[:len(gateways)], order[len(gateways):]):
            for child in group:
                if child.process is not None and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            for child in group:
                _reap(child, grace)
        for child in order:
            if child.log is not None:
                child.log.close()
        self.children.clear()
        for server in reversed(self.databases):
            server.stop()
        self.databases.clear()


def readiness(url: str) -> int:
    """The status of GET {url}/readyz, or 0 when nothing (or something else) answers."""
    context = ssl._create_unverified_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2, context=context) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        # HTTPException: another program that took the port first answers gibberish.
        return 0


def _reap(child: Child, grace: float) -> None:
    if child.process is None:
        return
    try:
        child.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()


def run_stack(*, port: int, instances: int, host: str, base_port: int | None = None) -> int:
    """`portico up`: start everything, print where it listens, run until Ctrl-C/SIGTERM.
    `base_port` moves the service ports (user at base, product base+10, order base+20);
    0 takes free ports. The state directory is PORTICO_STATE_DIR (default .portico)."""
    config = StackConfig(gateway_port=port, instances=instances, host=host,
                         state_dir=Path(os.environ.get("PORTICO_STATE_DIR", ".portico")))
    if base_port is not None:
        config.base_ports = {name: base_port and base_port + 10 * i
                             for i, name in enumerate(SERVICES)}
    stack = Stack(config)
    stopping = False

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print("portico: starting the stack ...", flush=True)
    stack.start()
    print(summary(stack), flush=True)
    try:
        while not stopping:
            for name in stack.exited():
                print(f"portico: {name} exited; starting it again", flush=True)
                stack.restart(name)
            time.sleep(0.5)
    finally:
        print("portico: stopping ...", flush=True)
        stack.stop()
        print("portico: stopped", flush=True)
    return 0
