"""`make bench` in smoke mode, end to end, so the harness cannot rot: it starts its own stack,
Envoy and floor app, runs every scenario for a second, writes its results and stops everything.
Speeds are never asserted; the read-heavy mix through Portico must read nothing stale, and the
overload rows must have timed every answer wrk counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("floor", "floor-c1", "portico-cached", "portico-cached-c1",
             "portico-uncached-products", "portico-uncached-users", "envoy-products",
             "envoy-users", "portico-write", "mix-portico", "mix-envoy", "portico-trace-off",
             "portico-trace-100", "portico-trace-1", "portico-overload",
             "portico-overload-polite", "envoy-overload")


def test_the_benchmark_runs_every_scenario_and_the_portico_mix_reads_nothing_stale(
        tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-m", "scripts.bench.run", "--smoke", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    scenarios = results["scenarios"]
    assert set(scenarios) == set(SCENARIOS)
    for name, figures in scenarios.items():
        assert figures["rps"] > 0, name
        assert figures["p50"] <= figures["p90"] <= figures["p99"], name
        assert figures["cpu"] > 0 and figures["rss_mb"] > 0, name
    assert scenarios["floor"]["ratio_floor"] == 1.0
    assert scenarios["portico-uncached-products"]["ratio_envoy"] > 0
    # Where the machine's CPU went: each front door and what it called, in its own group.
    portico = scenarios["portico-uncached-products"]["machine_us_per_request"]
    envoy = scenarios["envoy-products"]["machine_us_per_request"]
    for group in ("gateway", "services", "SecantusDB", "Redis", "load"):
        assert portico[group] > 0, group
    assert envoy["Envoy"] > 0 and envoy["services"] > 0 and envoy["SecantusDB"] > 0
    assert scenarios["portico-uncached-users"]["machine_us_per_request"]["PostgreSQL"] > 0

    mix = scenarios["mix-portico"]
    assert mix["puts"] > 0 and mix["gets"] > 0
    assert mix["stale_reads"] == 0, mix["stale_examples"]
    assert results["memory"]["rss_before_mb"] > 0 and results["memory"]["rss_after_mb"] > 0

    for name in ("portico-overload", "portico-overload-polite", "envoy-overload"):
        overload = scenarios[name]
        assert overload["timed"] == overload["requests"], name  # every answer paired and timed
        assert overload["ok"] > 0 and overload["ok"] + overload["shed"] <= overload["timed"], name
        assert overload["goodput_ratio"] > 0 and overload["p99_2xx_ratio"] > 0, name
        assert overload["p50_2xx"] <= overload["p99_2xx"], name
        assert overload["cpu_us_per_2xx"] > 0, name

    table = (out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in SCENARIOS)
    assert "Against the targets (printed, not asserted)" in table
    assert "| envoy-users |" in table.split("Where the machine's CPU went")[1]
    assert "| portico-trace-100 | 100% |" in table  # the tracing rows' own table
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")
    assert "| floor |" in done.stdout  # the table is printed too
