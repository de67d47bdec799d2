"""Two gateway processes sharing one Redis admit no more than one bucket's worth together.

The gateways run with no service behind them: a path that matches no route is limited like any
other request (and answered 404), which is all this test needs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scripts.devstack.servers import find_free_port

# A rate well under what even a busy machine serves, so the bucket does empty.
RATE, BURST = 20.0, 100
# About 2 s of load; longer (up to 10 s) only if a busy machine has not emptied the bucket yet.
DURATION, MAX_DURATION, MAX_REQUESTS, WORKERS = 2.0, 10.0, 4000, 16
HERE = Path(__file__).parent


def _start(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, env=env, cwd=HERE.parent.parent)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}: not ready after 30 s")


@pytest.fixture
def replicas(redis_url: str, tmp_path: Path) -> Iterator[list[str]]:
    key = tmp_path / "jwt.pub.pem"
    key.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    # A Redis database of the test's own: the buckets start empty whatever ran before.
    database = 1 + uuid.uuid4().int % 15
    env = {**os.environ, "PORTICO_REDIS_URL": redis_url.rsplit("/", 1)[0] + f"/{database}",
           "PORTICO_RATE_LIMIT_RATE": str(RATE), "PORTICO_RATE_LIMIT_BURST": str(BURST),
           "PORTICO_JWT_PUBLIC_KEY_FILE": str(key), "PORTICO_LOG_LEVEL": "WARNING",
           "PORTICO_ACCESS_LOG": "false", "PORTICO_USER_ADDRS": "127.0.0.1:1",
           "PORTICO_PRODUCT_ADDRS": "127.0.0.1:1", "PORTICO_ORDER_ADDRS": "127.0.0.1:1",
           # Generous: the two servers and their client share a busy test machine, and a
           # timeout would move a request onto a process's own bucket, which the test counts.
           "PORTICO_REDIS_TIMEOUT_SECONDS": "2", "PORTICO_MAX_IN_FLIGHT": "1000"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    ports = [find_free_port() for _ in range(2)]
    processes = [_start(port, env) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process in zip(urls, processes, strict=True):
            _wait_ready(url, process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _hammer(urls: list[str]) -> tuple[Counter[tuple[str, int]], float]:
    """Requests to both servers from many connections of one client, for DURATION seconds
    and until one was refused (within MAX_DURATION and MAX_REQUESTS)."""
    outcomes: Counter[tuple[str, int]] = Counter()
    sent = 0
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        started = time.monotonic()

        def done() -> bool:
            elapsed = time.monotonic() - started
            refused = any(status == 429 for _, status in outcomes)
            return (sent >= MAX_REQUESTS or elapsed >= MAX_DURATION
                    or (elapsed >= DURATION and refused))

        async def worker(index: int) -> None:
            nonlocal sent
            while not done():
                sent += 1
                url = urls[(index + sent) % 2]
                response = await client.get(f"{url}/no-such-route")
                outcomes[url, response.status_code] += 1

        await asyncio.gather(*(worker(i) for i in range(WORKERS)))
        elapsed = time.monotonic() - started
    return outcomes, elapsed


async def _local_decisions(url: str) -> float:
    """Decisions a server took on its own bucket: none, while Redis answers."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("portico_rate_limit_decisions_total{")
               and 'backend="local"' in line)


async def test_two_replicas_admit_one_bucket(replicas: list[str]) -> None:
    outcomes, elapsed = await _hammer(replicas)
    admitted = sum(n for (_, status), n in outcomes.items() if status == 404)
    refused = sum(n for (_, status), n in outcomes.items() if status == 429)
    bound = (BURST + RATE * elapsed) * 1.01
    print(f"\nreplicas: {sum(outcomes.values())} requests in {elapsed:.2f} s, "
          f"admitted {admitted} (bound {bound:.1f}), refused {refused}, {dict(outcomes)}")
    assert {status for _, status in outcomes} <= {404, 429}
    assert all(any(outcomes[url, s] for s in (404, 429)) for url in replicas)
    assert [await _local_decisions(url) for url in replicas] == [0, 0]
    assert refused > 0
    # The bucket starts full, so the first BURST requests are admitted whatever the timing.
    assert BURST <= admitted <= bound
