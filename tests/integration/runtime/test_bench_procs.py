"""The benchmark's CPU accounting by process tree (scripts/bench/procs.py), on real processes."""

import os
import subprocess
import sys

from scripts.bench import procs

# Told to go, the parent starts a child that spends `BURN` seconds of CPU and ends; the parent
# says so and stays.
BURN = 0.3
PARENT = f"""
import subprocess, sys, time
sys.stdin.readline()
burn = "import time\\nstart = time.process_time()\\nwhile time.process_time() - start < {BURN}: pass"
subprocess.run([sys.executable, "-c", burn], check=True)
print("ended", flush=True)
time.sleep(60)
"""


def test_a_tree_keeps_the_time_of_a_child_that_ended_and_the_nearest_root_takes_it() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        # This process is the parent's parent: its group must not take the parent's tree.
        groups = {"tree": [parent.pid], "test": [os.getpid()]}
        before, busy = procs.cpu_by_tree(groups), procs.machine_busy_seconds()
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "ended\n"  # the child has ended and been reaped
        after = procs.cpu_by_tree(groups)
        busy = procs.machine_busy_seconds() - busy
    finally:
        parent.kill()
        parent.wait()

    assert after["tree"] - before["tree"] >= BURN
    assert after["test"] - before["test"] < BURN
    assert busy >= BURN
    assert procs.cpu_by_tree({}) == {}
