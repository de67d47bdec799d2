"""What traces cost: the uncached product GET (portico-uncached-products) with traces off, on
with every request sampled, and on with 1% sampled, run one after another.

Traces are process settings (OTEL_*), and the stack's own processes run without them so that
every other row is measured as before. So the traced rows have processes of their own beside
the stack: two product instances and one gateway per sampling ratio, all exporting over
OTLP/gRPC (batched, as in production) to a receiver in the benchmark's process that answers
every export at once without decoding it, and all on the stack's databases. The traced
gateways believe nobody's traceparent (the load sends none): each request is a new trace,
sampled at the gateway's ratio, and the product instances follow its decision. The row with
traces off is the stack's own gateway and product instances, run again next to the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from scripts.bench.procs import Pinning
from scripts.bench.scenarios import Scenario
from scripts.devstack.otlp import OtlpReceiver
from scripts.devstack.stack import Stack

RATIOS = {"portico-trace-100": "1", "portico-trace-1": "0.01"}
OFF = "portico-trace-off"


@dataclass
class TracedServers:
    """The traced gateways by row name: their URLs and processes; and the receiver."""

    urls: dict[str, str]
    pids: dict[str, int]
    receiver: OtlpReceiver

    def stop(self) -> None:
        self.receiver.stop()


def start(stack: Stack, pinning: Pinning) -> TracedServers:
    """The traced product instances and gateways, beside `stack` (which stops them)."""
    receiver = OtlpReceiver(keep=False).start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
           "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
           "PORTICO_TRUSTED_PROXIES": ""}
    try:
        products = [stack.add_service("product", f"product-traced-{i}", env) for i in (1, 2)]
        urls, pids = {}, {}
        for name, ratio in RATIOS.items():
            process = f"gateway-{name}"
            urls[name] = stack.add_gateway(process, {
                **env, "OTEL_TRACES_SAMPLER_ARG": ratio,
                "PORTICO_PRODUCT_ADDRS": ",".join(products)})
            pids[name] = stack.children[process].process.pid
            pinning.pin_server(pids[name])  # where the stack's gateway runs
    except BaseException:
        receiver.stop()
        raise
    return TracedServers(urls, pids, receiver)


def wanted(plan: list[Scenario]) -> bool:
    return any(scenario.server in RATIOS for scenario in plan)


def table(results: dict[str, dict], plan: list[Scenario]) -> list[str]:
    """The tracing rows side by side, each against the row with traces off."""
    rows = [s for s in plan if s.name == OFF or s.server in RATIOS]
    off = results.get(OFF)
    if not rows or off is None:
        return []
    lines = ["| scenario | sampled | req/s | × off | p50 ms | p99 ms | CPU µs/req | "
             "+ CPU µs/req |", "|---|---|---|---|---|---|---|---|"]
    for scenario in rows:
        r = results[scenario.name]
        ratio = RATIOS.get(scenario.server)
        sampled = "off" if ratio is None else f"{float(ratio):.0%}"
        cpu, base = r["cpu_us_per_request"], off["cpu_us_per_request"]
        extra = f"{cpu - base:+,.0f}" if cpu is not None and base is not None else "–"
        cells = [scenario.name, sampled, f"{r['rps']:,.0f}",
                 f"{r['rps'] / off['rps']:.2f}" if off["rps"] else "–", f"{r['p50']:.2f}",
                 f"{r['p99']:.2f}", f"{cpu:,.0f}" if cpu is not None else "–", extra]
        lines.append("| " + " | ".join(cells) + " |")
    return ["Traces (the uncached product GET, run one after another; CPU is the serving "
            "gateway's):", "", *lines, ""]
