"""Child processes of the benchmark (floor app, Envoy, load generators) and what /proc says
about a process: CPU time and resident memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scripts.devstack.servers import die_with_parent

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Pinning:
    """Which core serves (gateway, floor app or Envoy) and which one loads (wrk, the mix
    driver). Empty when taskset is missing or fewer than two cores are ours: then nothing is
    pinned, and the report says so."""

    server_cpu: int | None
    load_cpu: int | None

    @classmethod
    def detect(cls) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        return cls(cpus[0], cpus[1])

    @property
    def enabled(self) -> bool:
        return self.server_cpu is not None

    def server(self, command: Sequence[str]) -> list[str]:
        return _taskset(self.server_cpu, command)

    def load(self, command: Sequence[str]) -> list[str]:
        return _taskset(self.load_cpu, command)

    def pin_server(self, pid: int) -> None:
        """Moves a running process, every thread of it, onto the serving core."""
        if self.server_cpu is not None:
            subprocess.run(["taskset", "-a", "-p", "-c", str(self.server_cpu), str(pid)],
                           check=True, stdout=subprocess.DEVNULL)

    def describe(self) -> str:
        if not self.enabled:
            return "not pinned (taskset missing or fewer than 2 cores)"
        return f"server on CPU {self.server_cpu}, load generator on CPU {self.load_cpu}"


def _taskset(cpu: int | None, command: Sequence[str]) -> list[str]:
    return list(command) if cpu is None else ["taskset", "-c", str(cpu), *command]


def spawn(command: Sequence[str], *, log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Starts a long-running child in a session of its own, output to `log`."""
    out: IO[bytes] = open(log, "ab")  # noqa: SIM115 (closed with the process by stop())
    try:
        return subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True, preexec_fn=die_with_parent())
    finally:
        out.close()  # the child has its own copy of the descriptor


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to the child's whole session after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def cpu_seconds(process: int | Path) -> float:
    """User + system CPU time so far of a process (a pid: all its threads), or of what a /proc
    directory describes (/proc/<pid>/task/<tid>: one thread)."""
    fields = _stat_fields(process if isinstance(process, Path) else Path(f"/proc/{process}"))
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _stat_fields(process: Path) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first), as proc(5)
    numbers them less 3."""
    stat = (process / "stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def cpu_by_tree(groups: Mapping[str, Iterable[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of process trees: every process counts towards the
    group of its nearest ancestor (itself included) among the groups' root pids, and its
    reaped children's time with it, so a process that ended meanwhile is not lost. Processes
    under no root are left out."""
    root_group = {pid: name for name, pids in groups.items() for pid in pids}
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:  # ended while we looked
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        # utime, stime, and the same of its children it has waited for
        seconds[pid] = sum(int(field) for field in fields[11:15]) / _TICKS
    totals = dict.fromkeys(groups, 0.0)
    for pid, cpu in seconds.items():
        ancestor, hops = pid, 0
        while ancestor not in root_group and ancestor in parents and hops < 64:
            ancestor, hops = parents[ancestor], hops + 1
        if ancestor in root_group:
            totals[root_group[ancestor]] += cpu
    return totals


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting for I/O) so far."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user, nice, system, irq, softirq: not idle, iowait, or steal (the hypervisor's); guest
    # time is counted within user already
    return (sum(ticks[:3]) + ticks[5] + ticks[6]) / _TICKS


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of /proc/<pid>/status in MiB: VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"{field} not in /proc/{pid}/status")


def reset_peak_memory(pid: int) -> bool:
    """Starts VmHWM afresh from the current RSS (Linux's clear_refs "5"); False when not
    allowed, and then the peak is the process's lifetime peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False
