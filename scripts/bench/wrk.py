"""The fixed-path scenarios' load: wrk with requests.lua, parsed into the report's figures."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench.procs import Pinning
from scripts.bench.stats import PERCENTILES, histogram_percentiles

SCRIPT = Path(__file__).with_name("requests.lua")


@dataclass(frozen=True)
class Load:
    """One wrk load: `path` may hold "{id}", replaced by `ids` in turn (and so may `body`).

    `timed`: every answer is timed and counted by status in requests.lua (figures by status
    besides wrk's own, see run_wrk); `forwarded`: each connection sends an X-Forwarded-For
    address of its own (10.x.y.z). Both run wrk with one thread per connection (a thread's
    calls then belong to its one connection); other loads run on one thread."""

    path: str
    method: str = "GET"
    ids: Sequence[str] = ()
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    connections: int = 32
    timed: bool = False
    forwarded: bool = False
    polite: bool = False  # heed Retry-After (wait before asking again after a 503)

    @property
    def threads(self) -> int:
        return self.connections if self.timed or self.forwarded else 1

    def arguments(self) -> list[str]:
        args = [f"method={self.method}", f"path={self.path}"]
        if self.ids:
            args.append("ids=" + ",".join(self.ids))
        args += [f"header={name}: {value}" for name, value in self.headers.items()]
        if self.body is not None:
            args.append(f"body={self.body}")
        if self.timed:
            args.append("timed=1")
        if self.polite:
            args.append("polite=1")
        if self.forwarded:
            args.append("forwarded=1")
        return args


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is missing: `scripts/bootstrap.sh wrk` (or `make bench`) "
                           "installs it")
    return path


def run_wrk(base_url: str, load: Load, *, duration: float, pinning: Pinning) -> dict:
    """Runs the load for `duration` seconds; returns requests, rps, p50/p90/p99 (ms), errors
    (answers of 400 or more and socket errors, as wrk counts them) and their details; for a
    timed load, the figures by status of by_status() too."""
    seconds = max(1, round(duration))
    command = pinning.load([wrk_path(), f"-t{load.threads}", f"-c{load.connections}",
                            f"-d{seconds}s", "--timeout", "5s", "-s", str(SCRIPT), base_url,
                            "--", *load.arguments()])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = _line(done.stdout, "BENCH_JSON")
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line)
    failures = json.loads(_line(done.stdout, "BENCH_FAILURES") or "{}")
    elapsed = raw["duration_us"] / 1e6
    result = {
        "requests": raw["requests"], "duration": elapsed,
        "rps": raw["requests"] / elapsed if elapsed else 0.0,
        "p50": raw["p50_us"] / 1000, "p90": raw["p90_us"] / 1000, "p99": raw["p99_us"] / 1000,
        # Non-2xx/3xx answers and socket errors alike.
        "errors": sum(raw[k] for k in ("connect", "read", "write", "status", "timeout")),
        "socket_errors": {k: raw[k] for k in ("connect", "read", "write", "timeout") if raw[k]},
        # Every answer of 300 or more, by status, with the first body seen of each.
        "failures": failures,
        # wrk's own CPU time over the run's wall time, in cores: is the load generator keeping up?
        "driver_cpu": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        / elapsed if elapsed else 0.0,
    }
    if load.timed:
        # wrk's own percentiles include the samples its coordinated-omission correction adds
        # (see requests.lua); a timed load reports its answers' own, and keeps wrk's aside.
        result["wrk_percentiles"] = {k: result.pop(k) for k in ("p50", "p90", "p99")}
        timings = json.loads(_line(done.stdout, "BENCH_TIMINGS") or "{}")
        result.update(by_status(timings, elapsed=elapsed, socket_errors=result["socket_errors"]))
        estimate = json.loads(_line(done.stdout, "BENCH_ESTIMATE") or "null")
        result["p99_2xx_wrk_estimate"] = estimate["p99_2xx_us"] / 1000 if estimate else None
    return result


def _line(stdout: str, tag: str) -> str | None:
    return next((row.removeprefix(tag + " ") for row in stdout.splitlines()
                 if row.startswith(tag + " ")), None)


def by_status(timings: dict[str, dict[str, int]], *, elapsed: float,
              socket_errors: dict[str, int]) -> dict:
    """A timed load's figures from its answers' latencies by status (requests.lua's
    BENCH_TIMINGS: status -> {microseconds: count}), in ms, nearest rank as everywhere:
    p50/p90/p99 of every answer; `ok` (2xx answers), `ok_rps` and p50/p90/p99_2xx; `shed`
    (503 answers) and p50/p90/p99_503; `timed`, the answers timed (wrk's requests, when
    every one was paired); `other_errors`: answers neither 2xx nor 503, and connections that
    failed (connect, read and write errors; wrk's "timeout" counts answers slower than its
    timeout, which were answered all the same and are counted by their status)."""
    groups: dict[str, dict[float, int]] = {"_2xx": {}, "_503": {}, "other": {}, "": {}}
    for status, counts in timings.items():
        code = int(status)
        group = "_2xx" if 200 <= code < 300 else "_503" if code == 503 else "other"
        for us, count in counts.items():
            for name in (group, ""):
                groups[name][float(us)] = groups[name].get(float(us), 0) + count
    figures: dict[str, float | None] = {}
    for suffix in ("", "_2xx", "_503"):
        found = histogram_percentiles(groups[suffix])
        for p in PERCENTILES:
            figures[f"p{p}{suffix}"] = found[p] / 1000 if p in found else None
    ok = sum(groups["_2xx"].values())
    failed = sum(n for kind, n in socket_errors.items() if kind != "timeout")
    return {"timed": sum(groups[""].values()), "ok": ok,
            "ok_rps": ok / elapsed if elapsed else 0.0, "shed": sum(groups["_503"].values()),
            "other_errors": sum(groups["other"].values()) + failed, **figures}
