"""`make bench`: Portico, a bare FastAPI floor and Envoy's gRPC-JSON transcoder, measured side
by side in one run on one machine.

    .venv/bin/python -m scripts.bench.run [--duration 10] [--memory-seconds 120] [--out DIR]
    .venv/bin/python -m scripts.bench.run --smoke     # seconds per scenario: the harness works

It starts the stack in its benchmark profile (stage.py), the floor app and Envoy, seeds 1,000
products and 100 users, runs every scenario (scenarios.py) for the same duration, the overloads
last (--overload-connections, 512 by default, 16 in smoke mode), then a sustained load to see
whether the gateway's memory grows, and writes results.md, results.json and results.png to the
results folder (bench-results/ by default) and prints the tables.
Servers run on one core and load generators on the other where taskset allows. Everything it
starts is stopped again, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from scripts.bench import procs, profiling, report, tracing
from scripts.bench.envoy import IDENTITY as ENVOY_IDENTITY
from scripts.bench.envoy import EnvoyProcess, envoy_binary, write_descriptor
from scripts.bench.scenarios import (
    CONNECTIONS,
    OVERLOAD_CONNECTIONS,
    OVERLOAD_SETTLE,
    Servers,
    run_memory,
    run_scenario,
    scenarios,
)
from scripts.bench.stage import gateway_pid, process_groups, seed, start_stack
from scripts.bench.wrk import wrk_path
from scripts.devstack.servers import find_free_port

ROOT = Path(__file__).resolve().parents[2]
SMOKE = {"duration": 1.0, "memory_seconds": 2.0, "users": 10, "overload_connections": 16,
         "settle": 0.5}

NOTES = [
    "Portico runs one gateway worker with every edge policy on (request id, metrics, security "
    "headers, body limit, JWT authentication, Redis rate limit with limits set so high that it "
    "never refuses, Redis response cache), at log level WARNING with the access log off; Envoy "
    "runs one worker thread with the transcoder and router only (no JWT check, no rate limit, "
    "no cache, no access log).",
    "Both call the same two instances of each service round-robin; the services, PostgreSQL, "
    "Redis and SecantusDB are not pinned and share the machine with everything else.",
    "Uncached Portico GETs send `Cache-Control: no-cache`: each is a real miss (cache lookup, "
    "gRPC call, cache fill) with the cache on, as in production.",
    "wrk (1 thread, 32 connections unless \"1 connection\"; the overloads below: one thread per "
    "connection) drives the fixed-path scenarios; the "
    "read-heavy mix comes from a Python asyncio driver (raw HTTP/1.1 with httptools, 32 "
    "connections), the same for Portico and Envoy, which checks every answer for stale reads; "
    "its own CPU use is in results.json (driver_cpu, in cores).",
    "CPU is the serving process's CPU time over wall time (1.00 = one core busy); CPU µs/req is "
    "that CPU time per request; peak RSS is VmHWM during the scenario.",
    "× floor and × Envoy: requests/s over the floor's (the 1-connection floor for "
    "1-connection rows) and over Envoy's same GETs (its mix for the mix).",
    "Overload rows: the uncached GETs of portico-uncached-products and envoy-products from many "
    "more connections, each with an X-Forwarded-For of its own (10.x.y.z, believed by the "
    "gateway from 127.0.0.1, so each connection is a client of its own for the rate limit; "
    "Envoy ignores it), run last, each followed by a pause while the services drain. wrk runs "
    "one thread per connection there, so that requests.lua can pair every answer with its "
    "request and time it (LuaJIT's monotonic clock, read where wrk reads its own); their "
    "latencies are those of the answers, by status: 2xx (admitted), 503 (shed) and every "
    "answer (the p50/p90/p99 of their row in the table above). wrk's own percentiles, which "
    "include the samples its coordinated-omission correction adds, are in results.json "
    "(wrk_percentiles). wrk does not heed Retry-After: a connection answered 503 asks again at "
    "once, the worst case. A thread per connection costs wrk about 0.1 ms of CPU per answer "
    "(a third of that on one thread), on the core the services share: its CPU use is in the "
    "table (driver_cpu in results.json, for every wrk row). 2xx/s over the baseline's 2xx "
    "answers/s, 2xx p99 over the "
    "baseline's p99 (wrk's, as every 32-connection row); CPU per answer and per 2xx answer; "
    "peak RSS during the overload and RSS when it started. The profile believes "
    "X-Forwarded-For from 127.0.0.1 for every row: reading it costs each Portico request a "
    "few µs of CPU (parsing the peer's address), also where none is sent.",
    "Traces: portico-trace-off is portico-uncached-products again, next to the traced rows; "
    "portico-trace-100 and portico-trace-1 go through gateways of their own (pinned like the "
    "stack's) to two product instances of their own, all with traces on (OTLP/gRPC, batched, "
    "to a receiver in the benchmark's process that answers without decoding), sampling 100% "
    "and 1% of requests at the gateway (parent-based: the services follow). Every other row "
    "runs with traces off, as before.",
]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Portico next to a FastAPI floor and Envoy")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--memory-seconds", type=float, default=120.0,
                        help="seconds of sustained load for the memory check")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--overload-connections", type=int, default=OVERLOAD_CONNECTIONS,
                        help="connections of the overload scenarios (one wrk thread each)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy profiles of the gateway during the Portico scenarios")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), metavar="NAMES",
                        help="run only these scenarios (comma-separated names), for quick "
                             "comparisons; ratios to scenarios left out are not shown")
    parser.add_argument("--smoke", action="store_true",
                        help="a couple of seconds per scenario: proves the harness runs")
    args = parser.parse_args(argv)
    args.settle = OVERLOAD_SETTLE
    if args.smoke:
        args.duration, args.memory_seconds, args.users, args.settle = (
            SMOKE["duration"], SMOKE["memory_seconds"], min(args.users, SMOKE["users"]),
            SMOKE["settle"])
        args.overload_connections = min(args.overload_connections,
                                        SMOKE["overload_connections"])
    if not (1 <= args.duration <= 3600 and 1 <= args.memory_seconds <= 3600):
        parser.error("--duration and --memory-seconds must be within 1..3600 seconds")
    if not 1 <= args.overload_connections <= 4096:
        parser.error("--overload-connections must be within 1..4096")
    return args


def _interruptible() -> None:
    """SIGTERM, and SIGINT even when started in the background, stop the run cleanly."""
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _uninterrupted(stop: Callable[[], object]) -> None:
    """Runs a clean-up step with SIGINT and SIGTERM held off, so a second Ctrl-C cannot leave
    half the children running."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                     signal.SIGTERM)}
    try:
        stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_for(url: str, *, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with code {process.returncode}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            with urllib.request.urlopen(url, timeout=1):
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer")


def _say(text: str) -> None:
    print(f"bench: {text}", flush=True)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    pinning = procs.Pinning.detect()
    wrk_path(), envoy_binary()  # missing tools stop the run before anything starts
    if args.profile is not None:
        profiling.py_spy()
        args.profile.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as running:
        _say("starting the stack (benchmark profile) ...")
        descriptor = write_descriptor(workdir / "portico.pb")
        stack = start_stack(workdir)
        running.callback(_uninterrupted, stack.stop)
        gateway = gateway_pid(stack)
        pinning.pin_server(gateway)
        floor_port = find_free_port()
        floor = procs.spawn(pinning.server([sys.executable, "-m", "scripts.bench.floor_app",
                                            "--port", str(floor_port)]),
                            log=workdir / "floor.log", cwd=ROOT)
        running.callback(_uninterrupted, lambda: procs.stop(floor))
        envoy = EnvoyProcess(workdir, descriptor=descriptor, addresses=stack.addresses,
                             pinning=pinning, tls=stack.identity(ENVOY_IDENTITY))
        running.callback(_uninterrupted, envoy.stop)
        _say(f"seeding {args.products} products and {args.users} users ...")
        catalogue = seed(stack, products=args.products, users=args.users)
        floor_url = f"http://127.0.0.1:{floor_port}"
        _wait_for(f"{floor_url}/products/P0000", process=floor)
        envoy.wait_ready()
        servers = Servers(urls={"floor": floor_url, "portico": stack.gateway_url,
                                "envoy": envoy.url},
                          pids={"floor": floor.pid, "portico": gateway, "envoy": envoy.pid},
                          groups=lambda: process_groups(stack, Envoy=envoy.pid,
                                                        floor=floor.pid))
        plan = [scenario for scenario in scenarios(
            catalogue, overload_connections=args.overload_connections, settle=args.settle)
            if args.only is None or scenario.name in args.only]
        if tracing.wanted(plan):
            _say("starting the traced gateways and product instances ...")
            traced = tracing.start(stack, pinning)
            running.callback(_uninterrupted, traced.stop)
            servers.urls.update(traced.urls)
            servers.pids.update(traced.pids)
        rss_start = procs.memory_mb(gateway)
        results = {}
        for scenario in plan:
            _say(f"{scenario.name}: {args.duration:g} s ...")
            results[scenario.name] = run_scenario(scenario, servers, catalogue,
                                                  duration=args.duration, pinning=pinning,
                                                  workdir=workdir, profile_dir=args.profile)
        _say(f"memory: {args.memory_seconds:g} s of sustained load ...")
        memory = run_memory(stack.gateway_url, gateway, catalogue, seconds=args.memory_seconds,
                            pinning=pinning)
        memory["rss_at_start_mb"] = rss_start
        _say("stopping ...")
    report.add_ratios(results, plan)
    profile = {"duration": args.duration, "memory_seconds": args.memory_seconds,
               "profiled": args.profile is not None,
               "smoke": args.smoke, "connections": CONNECTIONS,
               "overload_connections": args.overload_connections, "products": args.products,
               "users": args.users, "pinning": pinning.describe(), "notes": NOTES}
    document = {"scenarios": results, "memory": memory, "machine": report.machine(),
                "profile": profile}
    print(report.write(document, plan, args.out), flush=True)
    _say(f"results in {args.out}/ (results.md, results.json, results.png)")
    return document


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    _interruptible()
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    try:
        run(args, workdir)
    except KeyboardInterrupt:
        _say(f"interrupted; logs kept in {workdir}")
        return 130
    except BaseException:
        _say(f"failed; logs kept in {workdir}")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
