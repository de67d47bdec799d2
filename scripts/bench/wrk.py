"""The fixed-path scenarios' load: wrk with requests.lua, parsed into the report's figures."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench.procs import Pinning

SCRIPT = Path(__file__).with_name("requests.lua")


@dataclass(frozen=True)
class Load:
    """One wrk load: `path` may hold "{id}", replaced by `ids` in turn (and so may `body`)."""

    path: str
    method: str = "GET"
    ids: Sequence[str] = ()
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    connections: int = 32

    def arguments(self) -> list[str]:
        args = [f"method={self.method}", f"path={self.path}"]
        if self.ids:
            args.append("ids=" + ",".join(self.ids))
        args += [f"header={name}: {value}" for name, value in self.headers.items()]
        if self.body is not None:
            args.append(f"body={self.body}")
        return args


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is missing: `scripts/bootstrap.sh wrk` (or `make bench`) "
                           "installs it")
    return path


def run_wrk(base_url: str, load: Load, *, duration: float, pinning: Pinning) -> dict:
    """Runs the load for `duration` seconds; returns requests, rps, p50/p90/p99 (ms), errors
    (answers of 400 or more and socket errors, as wrk counts them) and their details."""
    seconds = max(1, round(duration))
    command = pinning.load([wrk_path(), "-t1", f"-c{load.connections}", f"-d{seconds}s",
                            "--timeout", "5s", "-s", str(SCRIPT), base_url, "--",
                            *load.arguments()])
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    line = next((row for row in done.stdout.splitlines() if row.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    failures = next((json.loads(row.removeprefix("BENCH_FAILURES "))
                     for row in done.stdout.splitlines() if row.startswith("BENCH_FAILURES ")),
                    {})
    elapsed = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"], "duration": elapsed,
        "rps": raw["requests"] / elapsed if elapsed else 0.0,
        "p50": raw["p50_us"] / 1000, "p90": raw["p90_us"] / 1000, "p99": raw["p99_us"] / 1000,
        # Non-2xx/3xx answers and socket errors alike.
        "errors": sum(raw[k] for k in ("connect", "read", "write", "status", "timeout")),
        "socket_errors": {k: raw[k] for k in ("connect", "read", "write", "timeout") if raw[k]},
        # Every answer of 300 or more, by status, with the first body seen of each.
        "failures": failures,
    }
