"""Portico's own processes on the simulated machines: a gateway and one instance of each service
per host, started with `ip netns exec` (namespaces.Netns.popen) from the checkout's venv, each
logging to a file of its own, all sharing one state directory (one development CA and JWT key
pair, made once in the root namespace's file system, which the namespaces share)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.multihost.namespaces import stop
from tests.multihost.topology import Machine

REPO = Path(__file__).resolve().parents[2]
PORTS = {"user": 50051, "product": 50061, "order": 50071}
GATEWAY_PORT = 8080
DOMAIN = "portico.test"   # the services' DNS names: user.portico.test, ...


def service_name(service: str) -> str:
    return f"{service}.{DOMAIN}"


@dataclass
class PorticoProcess:
    """One gateway or service instance on `machine`, bound to `host` (one of its addresses)."""

    name: str
    machine: Machine
    host: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> PorticoProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = self.machine.netns.popen(
                [sys.executable, "-m", *self.args], log=log, env=self.env, cwd=REPO)
        return self

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop), SIGKILL after `grace`; the exit code."""
        return stop(self.process, grace=grace)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()


def gateway(machine: Machine, env: dict[str, str], log_dir: Path) -> PorticoProcess:
    return PorticoProcess(
        f"gateway-{machine.name}", machine, machine.address,
        ["gateway", "--host", machine.address, "--port", str(GATEWAY_PORT)], env, log_dir)


def service(name: str, machine: Machine, env: dict[str, str], log_dir: Path, *,
            host: str | None = None, suffix: str = "") -> PorticoProcess:
    """An instance of service `name` on `machine` (on `host`, another of its addresses, when
    given), whose certificate also names the service's DNS name."""
    host = host or machine.address
    env = {**env, "PORTICO_ADVERTISED_HOSTS": service_name(name)}
    return PorticoProcess(
        f"{name}-{machine.name}{suffix}", machine, host,
        ["services.cli", "service", name, "--host", host, "--port", str(PORTS[name])], env,
        log_dir)


def migrate(machine: Machine, env: dict[str, str], log_dir: Path) -> None:
    """`portico migrate` (schemas and the first admin), run on `machine`, to completion."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "migrate.log").open("ab") as log:
        done = subprocess.run(machine.netns.command([sys.executable, "-m", "services.cli",
                                                      "migrate"]),
                              env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                              timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed; see {log_dir / 'migrate.log'}")
