"""Optional profiles of the serving process during a scenario (`run.py --profile DIR`), with
py-spy: raw collapsed stacks (open them in speedscope, or turn them into a flame graph with
flamegraph.pl) and a plain-text summary of where the CPU went.

py-spy samples from outside the process (it is not imported) without pausing it
(--nonblocking: pausing every thread of the gateway 250 times a second cut its throughput
tenfold), so figures measured with --profile differ little from those without; a sample may
now and then be torn.

Only the main thread is summarised: it runs the event loop, i.e. all of the serving. The other
threads (gRPC's completion-queue poller and the like) wait in native code, which py-spy counts
as busy although /proc shows them using no CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from scripts.bench.procs import Pinning

RATE = 200  # samples per second
_MAIN_THREAD_ROOT = "_run_module_as_main "  # other threads start at Thread._bootstrap
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")
# Where a request's own work is decided: the innermost of these frames in a sample is charged
# with it, libraries it calls included (a Redis round trip made by the rate limiter is the
# rate limiter's).
_OWNERS = ("gateway", "services", "starlette", "fastapi", "uvicorn")
# The request's concerns, by source path; a sample goes to the first concern met walking from
# its innermost frame outwards (the rate limiter's Redis call is Redis; the access log's
# counters are metrics). Samples matching none are the event loop's own work.
CONCERNS = (
    ("Redis (redis-py, batcher, token bucket, cache store)",
     ("redis/", "gateway/policies/batch", "gateway/policies/redis", "gateway/policies/cluster",
      "gateway/policies/buckets", "gateway/policies/cache_store", "asyncio/streams")),
    ("gRPC call (grpc.aio)", ("grpc/", "grpc_")),
    ("call chain (upstream, tenacity, breaker, pool)",
     ("gateway/upstream", "tenacity/", "pybreaker")),
    ("protobuf <-> JSON", ("gateway/transcode", "google/protobuf", "orjson", "json/")),
    ("metrics (prometheus_client)", ("prometheus_client", "gateway/metrics")),
    ("logging", ("logging/", "services/common/logs")),
    ("JWT", ("jwt/", "cryptography", "gateway/policies/auth", "services/common/identity")),
    ("FastAPI routing, parameters, pydantic",
     ("fastapi/routing", "fastapi/_compat", "fastapi/dependencies", "pydantic",
      "fastapi/encoders", "gateway/routes")),
    ("the edge's own code (pipeline, policies)", ("gateway/",)),
    ("uvicorn HTTP/1.1 (httptools)", ("uvicorn/protocols",)),
    ("Starlette/FastAPI plumbing", ("starlette/", "fastapi/")),
    ("uuid (request ids)", ("uuid",)),
)
# Frames every main-thread sample passes through: never a concern.
_ROOTS = ("gateway/__main__", "gateway/edge/server.py", "services/cli.py", "uvicorn/_compat",
          "uvicorn/server", "uvicorn/main")


def py_spy() -> str:
    path = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(path).exists():
        raise RuntimeError("py-spy is missing: .venv/bin/pip install py-spy")
    return path


def record(pid: int, out: Path, *, seconds: float, pinning: Pinning) -> subprocess.Popen:
    """Starts sampling `pid` for `seconds` into `out` (raw collapsed stacks)."""
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
               "--rate", str(RATE), "--nonblocking", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(pinning.load(command), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)


def component(file: str) -> str:
    """What a source file belongs to: a project module (gateway.policies.cache), a package (redis),
    or a standard library module (asyncio)."""
    parts = Path(file).with_suffix("").parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return parts[parts.index(marker) + 1]
    for project in ("gateway", "services", "portico", "scripts"):
        if project in parts:
            return ".".join(parts[parts.index(project):][:2])
    for index, part in enumerate(parts):
        if re.fullmatch(r"python3\.\d+", part) and index + 1 < len(parts):
            return parts[index + 1]
    return parts[0] if parts else file


def _function(frame: re.Match) -> str:
    return f"{frame['name']} ({frame['file']})"


def _owner(frames: list[re.Match]) -> str:
    for frame in reversed(frames):
        if component(frame["file"]).split(".")[0] in _OWNERS:
            return _function(frame)
    return f"(event loop) {component(frames[-1]['file'])}"


def concern(frames: list[re.Match]) -> str:
    for frame in reversed(frames):
        if any(root in frame["file"] for root in _ROOTS):
            continue
        for name, paths in CONCERNS:
            if any(path in frame["file"] for path in paths):
                return name
    return "event loop (uvloop, tasks, futures)"


def _samples(raw: Path) -> list[tuple[list[re.Match], int]]:
    """The main thread's samples: (frames, root first; count)."""
    found = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [m for m in map(_FRAME.match, stack.split(";")) if m]
        if count.isdigit() and frames and frames[0].string.startswith(_MAIN_THREAD_ROOT):
            found.append((frames, int(count)))
    return found


def summary(raw: Path, *, top: int = 25) -> str:
    """Time by concern, self time by component and by function, the cost charged to each
    gateway/framework function, and inclusive time by function."""
    samples = _samples(raw)
    total = sum(count for _, count in samples)
    if not total:
        return "no samples\n"
    views: dict[str, Callable[[list[re.Match]], list[str]]] = {
        "by concern:": lambda f: [concern(f)],
        "self time by component:": lambda f: [component(f[-1]["file"])],
        "self time by function:": lambda f: [_function(f[-1])],
        "charged to the innermost gateway/framework function (callees included):":
            lambda f: [_owner(f)],
        "inclusive time by function:": lambda f: sorted({_function(m) for m in f}),
    }
    lines = [f"{total} samples of the main thread at {RATE}/s while busy (idle time not "
             "sampled); native code shows as its nearest Python caller"]
    for title, keys in views.items():
        counts: Counter[str] = Counter()
        for frames, count in samples:
            for key in keys(frames):
                counts[key] += count
        lines += ["", title, *(f"{100 * n / total:6.1f}%  {name}"
                               for name, n in counts.most_common(top))]
    return "\n".join(lines) + "\n"
