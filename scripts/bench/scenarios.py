"""The scenarios, side by side in one run, and how each is measured.

Each scenario is a load (wrk for the fixed paths; the Python mix driver for the read-heavy mix)
against one server (the floor app, the gateway or Envoy), and reports requests/s, latency
percentiles, errors, and that server process's CPU (cores used, and CPU microseconds per
request) and peak resident memory during the scenario.

The overload scenarios send the uncached GETs of portico-uncached-products (and envoy-products)
from far more connections (OVERLOAD_CONNECTIONS), each with a client address of its own
(X-Forwarded-For, believed from 127.0.0.1 in the benchmark profile: the rate limit is per client
address), more than the services behind can answer. A gateway that sheds load answers the
excess 503 at once; their figures split the answers by status (wrk.py's by_status) and are set
against the 32-connection row named by `baseline` (report.overload_table).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts.bench import procs, profiling
from scripts.bench.stage import Catalogue
from scripts.bench.wrk import Load, run_wrk

ROOT = Path(__file__).resolve().parents[2]
CACHED_IDS = 10  # the cached scenario's working set: every request a hit
CONNECTIONS = 32
OVERLOAD_CONNECTIONS = 512
OVERLOAD_SETTLE = 3.0  # seconds of quiet after an overload: the services drain what is queued


@dataclass(frozen=True)
class Scenario:
    """One row of the table: `server` is "floor", "portico" or "envoy" (or a traced gateway,
    "portico-trace-100" or "portico-trace-1": tracing.py); `load` a wrk Load, or
    None for the read-heavy mix. `floor` and `envoy` name the rows its ratios are taken to;
    `baseline`, for an overload, the 32-connection row of the same requests and server, and
    `settle` the seconds to wait once it is over, before the next scenario starts."""

    name: str
    what: str
    server: str
    load: Load | None
    floor: str | None = "floor"
    envoy: str | None = None
    warm: bool = False       # request each id once first, so the cache holds them
    price_base: int = 0      # the mix: prices written start above this
    baseline: str | None = None
    settle: float = 0.0


def scenarios(catalogue: Catalogue, *, overload_connections: int = OVERLOAD_CONNECTIONS,
              settle: float = OVERLOAD_SETTLE) -> list[Scenario]:
    """Every row, in the order they run: the overloads last, so that nothing they leave
    queued touches another row."""
    hot = catalogue.products[:CACHED_IDS]
    every = catalogue.products
    admin = {"Authorization": f"Bearer {catalogue.admin_token}"}
    no_cache = {"Cache-Control": "no-cache"}
    order = ('{"items": [{"product_id": "{id}", "quantity": 1}], '
             '"payment": {"token": "tok_visa"}}')
    product, user = "/products/{id}", "/users/{id}"
    overload = f"{overload_connections} connections, an X-Forwarded-For each"
    return [
        Scenario("floor", "bare FastAPI + orjson, GET", "floor", Load(product, ids=hot)),
        Scenario("floor-c1", "the same, 1 connection", "floor",
                 Load(product, ids=hot, connections=1)),
        Scenario("portico-cached", "GET /products/{id}, cache hits", "portico",
                 Load(product, ids=hot), envoy="envoy-products", warm=True),
        Scenario("portico-cached-c1", "the same, 1 connection", "portico",
                 Load(product, ids=hot, connections=1), floor="floor-c1", warm=True),
        Scenario("portico-uncached-products", "GET /products/{id}, Cache-Control: no-cache",
                 "portico", Load(product, ids=every, headers=no_cache),
                 envoy="envoy-products"),
        Scenario("portico-uncached-users", "GET /users/{id} with a JWT", "portico",
                 Load(user, ids=catalogue.users, headers=admin), envoy="envoy-users"),
        Scenario("envoy-products", "GET /products/{id} via grpc_json_transcoder", "envoy",
                 Load(product, ids=every)),
        Scenario("envoy-users", "GET /users/{id} via grpc_json_transcoder (JWT checked by "
                 "the service only)", "envoy", Load(user, ids=catalogue.users, headers=admin)),
        Scenario("portico-write", "POST /orders, tok_visa", "portico",
                 Load("/orders", method="POST", ids=catalogue.write_products, body=order,
                      headers={"Authorization": f"Bearer {catalogue.customer_token}"})),
        Scenario("mix-portico", "95% GET (Zipf 1.1) / 5% PUT price", "portico", None,
                 envoy="mix-envoy", price_base=100_000),
        Scenario("mix-envoy", "95% GET (Zipf 1.1) / 5% PUT price", "envoy", None,
                 price_base=10_000_000),
        # What traces cost (tracing.py): the uncached GET again, then through traced gateways.
        Scenario("portico-trace-off", "GET /products/{id}, no-cache, traces off", "portico",
                 Load(product, ids=every, headers=no_cache), floor=None),
        Scenario("portico-trace-100", "the same, traces on, 100% sampled",
                 "portico-trace-100", Load(product, ids=every, headers=no_cache), floor=None),
        Scenario("portico-trace-1", "the same, traces on, 1% sampled", "portico-trace-1",
                 Load(product, ids=every, headers=no_cache), floor=None),
        Scenario("portico-overload", f"uncached GET /products/{{id}}, {overload}", "portico",
                 Load(product, ids=every, headers=no_cache, connections=overload_connections,
                      timed=True, forwarded=True),
                 floor=None, baseline="portico-uncached-products", settle=settle),
        Scenario("portico-overload-polite",
                 "the same, clients that wait out Retry-After after a 503", "portico",
                 Load(product, ids=every, headers=no_cache, connections=overload_connections,
                      timed=True, forwarded=True, polite=True),
                 floor=None, baseline="portico-uncached-products", settle=settle),
        Scenario("envoy-overload", f"GET /products/{{id}} via Envoy, {overload}", "envoy",
                 Load(product, ids=every, connections=overload_connections, timed=True,
                      forwarded=True),
                 floor=None, baseline="envoy-products", settle=settle),
    ]


@dataclass(frozen=True)
class Servers:
    """Where each server answers and which process it is."""

    urls: dict[str, str]
    pids: dict[str, int]
    # The machine's process groups whose CPU each row accounts for (procs.cpu_by_tree), asked
    # afresh per row: the traced instances join the stack when their rows come.
    groups: Callable[[], dict[str, list[int]]] = dict


def run_scenario(scenario: Scenario, servers: Servers, catalogue: Catalogue, *,
                 duration: float, pinning: procs.Pinning, workdir: Path,
                 profile_dir: Path | None = None) -> dict:
    """Runs one scenario; with `profile_dir`, py-spy samples the gateway meanwhile (Portico
    scenarios only) into <name>.txt, summarised in <name>.summary.txt."""
    url, pid = servers.urls[scenario.server], servers.pids[scenario.server]
    if scenario.warm and scenario.load is not None:
        _warm(url, scenario.load)
    if scenario.load is not None:
        def action() -> dict:
            return run_wrk(url, scenario.load, duration=duration, pinning=pinning)
    else:
        def action() -> dict:
            return run_mix(url, scenario, catalogue, duration=duration, pinning=pinning,
                           workdir=workdir)
    groups = servers.groups()
    if profile_dir is None or not scenario.server.startswith("portico"):
        result = measured(pid, action, groups)
    else:
        raw = profile_dir / f"{scenario.name}.txt"
        sampler = profiling.record(pid, raw, seconds=duration, pinning=pinning)
        try:
            result = measured(pid, action, groups)
        finally:
            sampler.wait(timeout=duration + 60)
        if raw.exists():
            raw.with_suffix(".summary.txt").write_text(profiling.summary(raw))
    time.sleep(scenario.settle)
    return result


def measured(pid: int, action: Callable[[], dict],
             groups: dict[str, list[int]] | None = None) -> dict:
    """Runs `action`, adding the CPU and peak memory of process `pid` while it ran (and, for a
    load that counts its 2xx answers, the CPU per 2xx answer), and where the whole machine's
    CPU went per request, by process group (`groups`; "rest" is what no group accounts for)."""
    groups = groups or {}
    procs.reset_peak_memory(pid)
    rss_start = procs.memory_mb(pid)
    by_group, busy = procs.cpu_by_tree(groups), procs.machine_busy_seconds()
    cpu, started = procs.cpu_seconds(pid), time.monotonic()
    result = action()
    cpu, wall = procs.cpu_seconds(pid) - cpu, time.monotonic() - started
    busy = procs.machine_busy_seconds() - busy
    spent = {name: seconds - by_group[name]
             for name, seconds in procs.cpu_by_tree(groups).items()}
    spent["rest"] = busy - sum(spent.values())
    requests = result.get("requests") or 0
    figures = {**result, "cpu": cpu / wall,
               "cpu_us_per_request": cpu / requests * 1e6 if requests else None,
               "machine_cpu": busy / wall,
               "machine_us_per_request": {name: seconds / requests * 1e6
                                          for name, seconds in spent.items()}
               if requests else None,
               "rss_start_mb": rss_start, "rss_mb": procs.memory_mb(pid, "VmHWM")}
    if "ok" in result:
        figures["cpu_us_per_2xx"] = cpu / result["ok"] * 1e6 if result["ok"] else None
    return figures


def _warm(url: str, load: Load) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for id in load.ids:
            client.request(load.method, load.path.replace("{id}", id),
                           headers=load.headers).raise_for_status()


def run_mix(url: str, scenario: Scenario, catalogue: Catalogue, *, duration: float,
            pinning: procs.Pinning, workdir: Path) -> dict:
    """The Python mix driver as a process of its own, on the load generator's core."""
    out = workdir / f"{scenario.name}.json"
    command = [sys.executable, "-m", "scripts.bench.mix", "--url", url,
               "--products", ",".join(catalogue.products), "--duration", str(duration),
               "--connections", str(CONNECTIONS), "--price-base", str(scenario.price_base),
               "--out", str(out)]
    # Product writes are an admin's, whichever front door: the service checks the token.
    command += ["--admin-token", catalogue.admin_token]
    subprocess.run(pinning.load(command), check=True, cwd=ROOT, timeout=duration + 120)
    return json.loads(out.read_text())


def run_memory(url: str, pid: int, catalogue: Catalogue, *, seconds: float,
               pinning: procs.Pinning, samples: int = 10) -> dict:
    """The gateway's resident memory before, during and after a sustained uncached load over
    the whole catalogue (gRPC calls, cache fills, the rate limiter on every request)."""
    load = Load("/products/{id}", ids=catalogue.products, headers={"Cache-Control": "no-cache"})
    before = procs.memory_mb(pid)
    readings: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(seconds / samples):
            readings.append(round(procs.memory_mb(pid), 1))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_wrk(url, load, duration=seconds, pinning=pinning)
    finally:
        done.set()
        sampler.join()
    return {"seconds": seconds, "rps": result["rps"], "errors": result["errors"],
            "rss_before_mb": before, "rss_after_mb": procs.memory_mb(pid),
            "rss_samples_mb": readings}
