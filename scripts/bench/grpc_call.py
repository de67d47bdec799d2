"""What one unary gRPC call costs the calling process, apart from the stack: a grpc.aio client
making calls `--concurrency` at a time over mutual TLS to a grpc.aio server in another process
that answers at once (each pinned to a core of its own where taskset allows), once per set of
grpc experiments. It prints the client's CPU per call, split by thread, and its context switches.

    python -m scripts.bench.grpc_call --experiment=-event_engine_client

Each variant runs in a fresh client process: grpc reads GRPC_EXPERIMENTS when it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.bench import procs
from services.common.mtls import channel_credentials, server_credentials
from services.common.pki import CA_CERT_NAME, TlsMaterial, ensure_ca, issue, write_issued

METHOD = "/portico.bench.Echo/Call"
# A GetProduct-sized request and the metadata the gateway sends along (request id, a token).
REQUEST = b"x" * 120
METADATA = (("x-request-id", "0" * 32), ("authorization", "Bearer " + "t" * 300))


def _pki(directory: Path) -> None:
    ca_cert, ca_key = ensure_ca(directory)
    for name in ("server", "client"):
        cert, key = issue(name, ca_cert_pem=ca_cert, ca_key_pem=ca_key, hosts=["127.0.0.1"])
        write_issued(directory, name, TlsMaterial(ca_cert, cert, key))


def _read(directory: Path, name: str) -> TlsMaterial:
    """What _pki wrote for `name` (pki.write_issued's file names)."""
    return TlsMaterial(*(
        (directory / file).read_bytes()
        for file in (CA_CERT_NAME, f"{name}.pem", f"{name}-key.pem")))


async def _serve(directory: Path) -> None:
    import grpc

    async def echo(request: bytes, context) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "portico.bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}),))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(_read(directory, "server")))
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads by kind: the main (event loop) thread, grpc's
    event_engine threads, and the others (grpc's completion-queue poller among them)."""
    totals: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        name = (task / "comm").read_text()
        kind = "loop" if task.name == str(os.getpid()) else \
            "event_engine" if name.startswith("event_engine") else "other"
        totals[kind] = totals.get(kind, 0.0) + procs.cpu_seconds(task)
    return totals


async def _call(directory: Path, port: int, calls: int, concurrency: int) -> dict:
    import grpc

    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{port}", channel_credentials(_read(directory, "client")),
        options=[("grpc.enable_retries", 0), ("grpc.http2.bdp_probe", 0)])
    call = channel.unary_unary(METHOD)
    for _ in range(min(200, calls)):  # the connection and the code paths warmed
        await call(REQUEST, timeout=10, metadata=METADATA)
    each = max(1, calls // concurrency)

    async def caller() -> None:
        for _ in range(each):
            await call(REQUEST, timeout=10, metadata=METADATA)

    threads, usage, began = _thread_cpu(), resource.getrusage(resource.RUSAGE_SELF), \
        time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    after, threads_after = resource.getrusage(resource.RUSAGE_SELF), _thread_cpu()
    await channel.close()
    done = each * concurrency
    cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    switches = (after.ru_nvcsw + after.ru_nivcsw) - (usage.ru_nvcsw + usage.ru_nivcsw)
    return {"calls": done, "calls_per_s": done / elapsed, "cpu_us": cpu / done * 1e6,
            "switches": switches / done,
            **{f"{kind}_us": (threads_after.get(kind, 0.0) - threads.get(kind, 0.0)) / done * 1e6
               for kind in ("loop", "event_engine", "other")}}


def _client(directory: Path, port: int, calls: int, concurrency: int) -> None:
    import uvloop  # the gateway's loop (uvicorn's, with uvicorn[standard])

    uvloop.install()
    print(json.dumps(asyncio.run(_call(directory, port, calls, concurrency))), flush=True)


def _table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| GRPC_EXPERIMENTS | calls/s | client CPU µs/call | event loop thread | "
             "event_engine threads | other threads | context switches/call |",
             "|---|---|---|---|---|---|---|"]
    for variant, row in rows:
        lines.append(f"| `{variant or '(default)'}` | {row['calls_per_s']:,.0f} | "
                     f"{row['cpu_us']:.1f} | {row['loop_us']:.1f} | "
                     f"{row['event_engine_us']:.1f} | {row['other_us']:.1f} | "
                     f"{row['switches']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.grpc_call",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--experiment", action="append", dest="experiments", metavar="VALUE",
                        help="a GRPC_EXPERIMENTS value to run the client with, repeatable "
                             "(--experiment=-event_engine_client); the defaults are run first")
    parser.add_argument("--role", choices=("server", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calls < 1 or args.concurrency < 1:
        parser.error("--calls and --concurrency must be at least 1")
    if args.role == "server":
        asyncio.run(_serve(args.pki))
        return 0
    if args.role == "client":
        _client(args.pki, args.port, args.calls, args.concurrency)
        return 0
    variants = ["", *(args.experiments or ())]
    pinning = procs.Pinning.detect()
    me = [sys.executable, "-m", "scripts.bench.grpc_call"]
    with tempfile.TemporaryDirectory(prefix="portico-grpc-call-") as scratch:
        directory = Path(scratch)
        _pki(directory)
        server = subprocess.Popen(pinning.load([*me, "--role", "server", "--pki", scratch]),
                                  stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            rows = []
            for variant in variants:
                env = {**os.environ, "GRPC_EXPERIMENTS": variant}
                out = subprocess.run(
                    pinning.server([*me, "--role", "client", "--pki", scratch, "--port", str(port),
                                    "--calls", str(args.calls),
                                    "--concurrency", str(args.concurrency)]),
                    env=env, capture_output=True, text=True, check=True, timeout=600)
                rows.append((variant, json.loads(out.stdout.strip().splitlines()[-1])))
        finally:
            server.terminate()
            server.wait(10)
    where = (f"client on CPU {pinning.server_cpu}, server on CPU {pinning.load_cpu}"
             if pinning.enabled else pinning.describe())
    print(f"One unary call over mutual TLS, {args.concurrency} at a time, "
          f"{rows[0][1]['calls']:,} calls a row; {where}:\n")
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
