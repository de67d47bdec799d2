"""The results: ratios, a markdown table with the machine it ran on, results.json, and a
chart (throughput and latency percentiles per scenario)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

from scripts.bench import tracing
from scripts.bench.scenarios import Scenario

COLUMNS = ("scenario", "what", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "CPU (cores)",
           "CPU µs/req", "peak RSS MB", "× floor", "× Envoy", "stale reads")
# The overload table. Targets are printed next to the figures, never asserted.
OVERLOAD_COLUMNS = ("scenario", "connections", "2xx/s", "× 32-conn (target ≥ 0.90)",
                    "2xx p99 ms", "× 32-conn p99 (target ≤ 3)", "503s", "503 p50 / p99 ms",
                    "other errors", "all p50 / p99 ms", "CPU µs/answer", "CPU µs/2xx",
                    "peak RSS MB (at start)", "wrk CPU (cores)")
GOODPUT_TARGET, P99_TARGET = 0.90, 3.0


def add_ratios(results: dict[str, dict], plan: list[Scenario]) -> None:
    """ratio_floor and ratio_envoy: this scenario's requests/s over its reference row's; for
    an overload, goodput_ratio (its 2xx answers/s over its baseline row's) and p99_2xx_ratio
    (its 2xx answers' p99 over the baseline row's p99) too."""
    for scenario in plan:
        row = results[scenario.name]
        for key, reference in (("ratio_floor", scenario.floor), ("ratio_envoy", scenario.envoy)):
            base = results.get(reference, {}).get("rps") if reference else None
            row[key] = row["rps"] / base if base else None
        baseline = results.get(scenario.baseline) if scenario.baseline else None
        if baseline is not None:
            base_rps, base_p99 = answers_2xx_per_second(baseline), baseline.get("p99")
            row["baseline_2xx_rps"], row["baseline_p99"] = base_rps, base_p99
            row["goodput_ratio"] = row["ok_rps"] / base_rps if base_rps else None
            p99 = row.get("p99_2xx")
            row["p99_2xx_ratio"] = p99 / base_p99 if p99 is not None and base_p99 else None


def answers_2xx_per_second(row: dict) -> float | None:
    """A wrk row's 2xx answers per second: counted by status in a timed load, else its
    answers less those of 300 or more (wrk's failures, by status)."""
    if "ok_rps" in row:
        return row["ok_rps"]
    if not row.get("duration"):
        return None
    others = sum(n["count"] for n in (row.get("failures") or {}).values())
    return (row["requests"] - others) / row["duration"]


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": int(nproc or os.cpu_count() or 0), "cpu": model,
            "python": platform.python_version(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _cell(value: object, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(results: dict[str, dict], plan: list[Scenario]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for scenario in plan:
        r = results[scenario.name]
        cells = [scenario.name, scenario.what, _cell(r["rps"], 0), _cell(r["p50"]),
                 _cell(r["p90"]), _cell(r["p99"]), _cell(r["errors"]), _cell(r["cpu"]),
                 _cell(r["cpu_us_per_request"], 0), _cell(r["rss_mb"], 1),
                 _cell(r["ratio_floor"]), _cell(r["ratio_envoy"]), _cell(r.get("stale_reads"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pair(first: float | None, second: float | None) -> str:
    return f"{_cell(first)} / {_cell(second)}"


def overload_table(results: dict[str, dict], plan: list[Scenario]) -> list[str]:
    """The overload rows against their 32-connection baselines, and the targets; no lines
    when the plan has no overload."""
    rows = [s for s in plan if s.baseline]
    if not rows:
        return []
    lines = ["| " + " | ".join(OVERLOAD_COLUMNS) + " |", "|" + "---|" * len(OVERLOAD_COLUMNS)]
    verdicts = []
    for scenario in rows:
        r = results[scenario.name]
        cells = [scenario.name, _cell(scenario.load.connections), _cell(r["ok_rps"], 0),
                 _cell(r["goodput_ratio"]), _cell(r["p99_2xx"]), _cell(r["p99_2xx_ratio"]),
                 _cell(r["shed"]), _pair(r["p50_503"], r["p99_503"]), _cell(r["other_errors"]),
                 _pair(r["p50"], r["p99"]), _cell(r["cpu_us_per_request"], 0),
                 _cell(r.get("cpu_us_per_2xx"), 0),
                 f"{_cell(r['rss_mb'], 1)} ({_cell(r['rss_start_mb'], 1)})",
                 _cell(r.get("driver_cpu"))]
        lines.append("| " + " | ".join(cells) + " |")
        verdicts.append(
            f"{scenario.name}: goodput {_cell(r['goodput_ratio'])}× its baseline's "
            f"{_cell(r['baseline_2xx_rps'], 0)}/s ({_met(r['goodput_ratio'], GOODPUT_TARGET, 1)} "
            f"≥ {GOODPUT_TARGET:.2f}×), 2xx p99 {_cell(r['p99_2xx_ratio'])}× its baseline's "
            f"{_cell(r['baseline_p99'])} ms ({_met(r['p99_2xx_ratio'], P99_TARGET, -1)} "
            f"≤ {P99_TARGET:g}×), peak RSS {_cell(r['rss_mb'] - r['rss_start_mb'], 1)} MB over "
            f"its start (target: bounded)")
    baselines = ", ".join(f"{s.name} against {s.baseline}" for s in rows)
    return [f"Overload, each row against the 32-connection row of the same requests and server "
            f"({baselines}):", "", *lines, "",
            "Against the targets (printed, not asserted): " + "; ".join(verdicts) + ".", ""]


# The process groups of a row's machine figures (stage.process_groups), in table order.
MACHINE_GROUPS = ("gateway", "Envoy", "services", "PostgreSQL", "SecantusDB", "Redis", "load",
                  "rest")


def machine_table(results: dict[str, dict], plan: list[Scenario]) -> list[str]:
    """Where the whole machine's CPU went per request in the rows compared with Envoy, by
    process group; no lines when the plan has no such pair."""
    paired = {name for s in plan if s.envoy for name in (s.name, s.envoy)}
    rows = [s for s in plan if s.name in paired and results[s.name].get("machine_us_per_request")]
    if not rows:
        return []
    lines = ["| scenario | req/s | machine CPU (cores) | total | " + " | ".join(MACHINE_GROUPS)
             + " |", "|" + "---|" * (len(MACHINE_GROUPS) + 4)]
    for scenario in rows:
        r = results[scenario.name]
        spent = r["machine_us_per_request"]
        cells = [scenario.name, _cell(r["rps"], 0), _cell(r["machine_cpu"]),
                 _cell(sum(spent.values()), 0), *(_cell(spent.get(g), 0) for g in MACHINE_GROUPS)]
        lines.append("| " + " | ".join(cells) + " |")
    return ["Where the machine's CPU went, µs per request, by process group (each process "
            "tree's user and system time, its ended children's included; rest: the machine's "
            "busy time that no group accounts for, the kernel's softirq work among it, a little "
            "below zero at times: the machine's time is sampled at clock ticks, a process's is "
            "exact):", "",
            *lines, ""]


def _met(value: float | None, target: float, sign: int) -> str:
    if value is None:
        return "no figure for the target"
    return "target met:" if sign * (value - target) >= 0 else "target missed:"


def _errors(results: dict[str, dict], plan: list[Scenario]) -> list[str]:
    """One line per scenario that had errors: what they were."""
    lines = []
    for scenario in plan:
        row = results[scenario.name]
        if not row["errors"]:
            continue
        kinds = [f"{n['count']} × {status}" if isinstance(n, dict) else f"{n} × {status}"
                 for status, n in (row.get("failures") or {}).items()]
        kinds += [f"{n} × socket {kind}" for kind, n in (row.get("socket_errors") or {}).items()]
        lines.append(f"- {scenario.name}: {row['errors']} errors ({', '.join(kinds) or '?'})")
    return ["Errors:", *lines, ""] if lines else []


def markdown(document: dict, plan: list[Scenario]) -> str:
    m, p, memory = document["machine"], document["profile"], document["memory"]
    samples = ", ".join(f"{mb:.0f}" for mb in memory["rss_samples_mb"])
    return "\n".join([
        f"# Portico benchmark, {m['date']}", "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}. "
        f"{p['duration']:g} s per scenario{' (smoke mode)' if p['smoke'] else ''}"
        f"{' (with py-spy sampling the gateway)' if p['profiled'] else ''}; "
        f"{p['pinning']}.", "",
        table(document["scenarios"], plan), "",
        *tracing.table(document["scenarios"], plan),
        *machine_table(document["scenarios"], plan),
        *overload_table(document["scenarios"], plan),
        *_errors(document["scenarios"], plan),
        f"Memory: the gateway's RSS {memory['rss_before_mb']:.1f} MB before and "
        f"{memory['rss_after_mb']:.1f} MB after {memory['seconds']:g} s of uncached GETs over "
        f"the whole catalogue ({memory['rps']:,.0f} req/s; samples {samples} MB).", "",
        "Notes:",
        *[f"- {note}" for note in p["notes"]], "",
    ])


def chart(document: dict, plan: list[Scenario], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in plan]
    rows = [document["scenarios"][n] for n in names]
    colours = {"floor": "#999999", "portico": "#1f77b4", "envoy": "#d62728"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, 6), constrained_layout=True)
    bars = left.barh(names, [r["rps"] for r in rows],
                     color=[colours[s.server.partition("-")[0]] for s in plan])
    left.bar_label(bars, fmt="{:,.0f}", padding=3)
    left.invert_yaxis()
    left.set_xlabel("requests/s")
    left.set_title("Throughput")
    height = 0.27
    for offset, (key, shade) in enumerate((("p50", "#9ecae1"), ("p90", "#4292c6"),
                                           ("p99", "#08306b"))):
        left_edges = [i + (offset - 1) * height for i in range(len(names))]
        right.barh(left_edges, [max(r[key] or 0, 0.001) for r in rows], height=height, color=shade,
                   label=key)
    right.set_yticks(range(len(names)), names)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("latency, ms (log scale)")
    right.set_title("Latency percentiles")
    right.legend()
    figure.suptitle(f"Portico benchmark, {document['machine']['date']}, "
                    f"{document['machine']['nproc']} CPUs")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(document: dict, plan: list[Scenario], out: Path) -> str:
    """Writes results.md, results.json and results.png to `out`; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(document, plan)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    chart(document, plan, out / "results.png")
    return text
