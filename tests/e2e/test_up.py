"""`portico up` (what `make up` runs): the whole stack from one command, databases included,
ready on /readyz, data kept across runs, and nothing left behind after SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.devstack.stack import readiness

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's private temporary root: PostgreSQL runs as `postgres` when we are root.
    path = Path(tempfile.mkdtemp(prefix="portico-up-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_up(state_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PORTICO_DATABASE_URL", "PORTICO_REDIS_URL", "PORTICO_MONGODB_URI")}
    env.update(PORTICO_STATE_DIR=str(state_dir), PORTICO_ADMIN_EMAIL="root@example.com",
               PORTICO_ADMIN_PASSWORD="root-password-1")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", "0", "--base-port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True, text=True)
    deadline = time.monotonic() + 180
    output = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        ready = re.search(r"portico: ready\. gateway (\S+)", line)
        if ready:
            return process, ready.group(1)
    process.kill()
    raise AssertionError("portico up did not get ready:\n" + "".join(output[-40:]))


def stop_up(process: subprocess.Popen) -> None:
    children = descendants(process.pid)
    assert len(children) >= 7 + 3  # 6 instances + gateway + 3 databases (and their helpers)
    process.send_signal(signal.SIGTERM)
    process.stdout.read()
    assert process.wait(timeout=90) == 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)], "children left behind"


def test_up_serves_keeps_data_and_stops_cleanly(state_dir: Path) -> None:
    process, url = start_up(state_dir)
    try:
        assert readiness(url) == 200
        created = httpx.post(f"{url}/users", json={"name": "Kept", "email": "kept@example.com",
                                                   "password": "kept-password-1"}, timeout=30)
        assert created.status_code == 201, created.text
    finally:
        stop_up(process)

    process, url = start_up(state_dir)   # yesterday's data is still there
    try:
        login = httpx.post(f"{url}/auth/login", json={"email": "kept@example.com",
                                                      "password": "kept-password-1"}, timeout=30)
        assert login.status_code == 200
    finally:
        stop_up(process)
