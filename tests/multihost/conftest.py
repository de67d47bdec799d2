"""The multi-host tier's fixtures: one deployment (fleet.py) for the package's tests, in order
(test_1_... to test_5_...: each fault leaves the deployment usable for the next).

It needs root, network namespaces (`ip netns`, which a container without CAP_SYS_ADMIN refuses)
and HAProxy (`make test` installs HAProxy and iproute2 when absent). Where it cannot run it is
skipped with the reason printed. Whatever it made is removed at the end, also after a failure or
Ctrl-C (the fixture's finaliser; a SIGTERM is turned into KeyboardInterrupt meanwhile so that it
runs then too), and a run first sweeps away what a killed run left behind (namespaces.sweep).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.multihost.api import Seeded, seed, wait_ready
from tests.multihost.fleet import ADMIN_EMAIL, ADMIN_PASSWORD, Fleet
from tests.multihost.loadbalancer import haproxy_executable
from tests.multihost.namespaces import PREFIX
from tests.multihost.processes import PORTS
from tests.multihost.results import Results
from tests.multihost.topology import HOSTS, address

_results: list[Results] = []


def unmet() -> str | None:
    """Why the tier cannot run here, or None."""
    if os.geteuid() != 0:
        return "the multi-host tier needs root (network namespaces, veth pairs, routes)"
    if shutil.which("ip") is None:
        return "the multi-host tier needs `ip netns` (iproute2)"
    probe = f"{PREFIX}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True,
                          check=False)
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"network namespaces cannot be made here: {made.stderr.strip()}"
    if shutil.which("setpriv") is None:
        return "the multi-host tier needs setpriv (util-linux)"
    if haproxy_executable() is None:
        return "the multi-host tier needs HAProxy (apt-get install haproxy; scripts/bootstrap.sh)"
    return None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    reason = unmet()
    if reason is not None:
        print(f"\n[multihost] skipped: {reason}")
        pytest.skip(reason)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    root = tmp_path_factory.mktemp("multihost")
    results = Results(root / "results.jsonl")
    _results.append(results)
    started = time.monotonic()
    deployment = Fleet(root)
    try:
        deployment.start()
        instances = {f"{deployment.network[h].address}:{port}" for h in HOSTS
                     for port in PORTS.values()}
        ready = deployment.client.run(wait_ready(
            list(deployment.gateway_urls.values()), instances, source=address(100)))
        deployment.results = results
        print(f"\n[multihost] deployment up in {time.monotonic() - started:.1f} s (gateways "
              f"ready {ready:.1f} s after their start); logs in {deployment.logs}")
        yield deployment
    finally:
        left = deployment.stop()
        signal.signal(signal.SIGTERM, previous)
        results.record("teardown", {"swept_at_teardown": left or "nothing left",
                                    "tier_wall_time_s": time.monotonic() - started})


@pytest.fixture(scope="package")
def seeded(fleet: Fleet) -> Seeded:
    return fleet.client.run(seed(fleet.lb.url, ADMIN_EMAIL, ADMIN_PASSWORD))


def pytest_terminal_summary(terminalreporter) -> None:
    for results in _results:
        terminalreporter.write_line(f"multi-host tier results: {results.path}")
