"""Embedded servers (scripts/devstack) end with the process that started them, even when it is
killed outright (SIGKILL runs no atexit): a benchmark or stack interrupted mid-run must not leave
its PostgreSQL or Redis behind. Servers started from another thread are not tied to that thread
(the kernel's parent-death signal would come when it ends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scripts.devstack.redis_server import RedisServer
from tests.conftest import _postgres_data_dir

REPO = Path(__file__).resolve().parents[3]
CHILD = """
import sys
from scripts.devstack.postgres import PostgresServer
from scripts.devstack.redis_server import RedisServer
servers = [RedisServer(sys.argv[1]).start(), PostgresServer(sys.argv[2], fast=True).start()]
print(*(server._process.pid for server in servers), flush=True)
sys.stdin.readline()
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _until_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(map(_alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


def test_servers_end_with_a_process_killed_outright(tmp_path) -> None:
    with _postgres_data_dir() as postgres_dir:
        _kill_a_parent_of_servers(tmp_path, postgres_dir)


def _kill_a_parent_of_servers(redis_dir: Path, postgres_dir: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(redis_dir), str(postgres_dir)],
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        pids = [int(pid) for pid in child.stdout.readline().split()]
        assert len(pids) == 2 and all(map(_alive, pids))
        child.kill()
        child.wait(10)
        left = _until_gone(pids, 15)
        assert left == [], f"still running after their parent was killed: {left}"
    finally:
        child.kill()
        child.wait(10)
        for pid in pids:  # never leave them behind, whatever failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_server_started_from_a_thread_outlives_the_thread(tmp_path) -> None:
    server = RedisServer(tmp_path / "redis")
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join(60)
    try:
        time.sleep(0.5)  # the thread is gone: a parent-death signal would have come by now
        assert server._process is not None and server._process.poll() is None
    finally:
        server.stop()
