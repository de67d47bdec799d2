"""The gRPC call measurement apart from the stack (scripts/bench/grpc_call.py), run small: a real
server and client over mutual TLS, one client per GRPC_EXPERIMENTS value."""

import re
import subprocess
import sys


def test_it_prints_a_row_per_variant_with_the_clients_cost() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scripts.bench.grpc_call", "--calls", "64", "--concurrency", "8",
         "--experiment=-event_engine_client"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == ["`(default)`",
                                                            "`-event_engine_client`"], out
    for row in rows:
        calls_per_s, cpu = (float(cell.replace(",", "")) for cell in row.split("|")[2:4])
        assert calls_per_s > 0 and cpu > 0, row
    assert re.search(r"64 calls a row", out), out
