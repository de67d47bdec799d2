"""Network namespaces as hosts: what the multi-host tier needs of `ip netns`, and nothing more.

Everything the tier makes carries the prefix PREFIX (namespaces `pmh-*`; the links live inside
them), so a run can sweep away whatever an earlier, killed run left behind. The tier's subnet
SUBNET exists only inside those namespaces; the root namespace holds a `blackhole` route for it,
so a packet for a simulated host can never leave the machine, and the tier itself never sends
one from there: its probes and load run in a namespace (`Netns.call`, or a process started by
`Netns.popen`).

Processes are started with `ip netns exec NS setpriv --pdeathsig KILL -- ...`, in a session of
their own: they die with the test process (the parent-death signal is tied to the thread that
forked them, so only the main thread starts long-lived ones), and `stop` signals their whole
process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

PREFIX = "pmh"
# A private /24 nothing else on a machine is likely to use; a constant, so the sweep knows it.
SUBNET = "10.199.73.0/24"
_CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


def ip(*args: str, check: bool = True) -> str:
    """Runs `ip ARGS` (in the root namespace: namespace work names its namespace with -n)."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def ours() -> list[str]:
    """The tier's namespaces that exist now (ours by their prefix)."""
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    return [name for name in names if name.startswith(f"{PREFIX}-")]


def sweep() -> list[str]:
    """Removes every trace of a run of the tier: the processes in its namespaces (killed), the
    namespaces (and with them their links, bridges and addresses), links of its prefix left in
    the root namespace, and the blackhole route. Returns what it removed."""
    removed = []
    for name in ours():
        for pid in ip("netns", "pids", name, check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "delete", name, check=False)
        removed.append(f"netns {name}")
    for line in ip("-o", "link", "show").splitlines():
        link = line.split(":")[1].strip().split("@")[0]
        if link.startswith(f"{PREFIX}-"):
            ip("link", "delete", link, check=False)
            removed.append(f"link {link}")
    if SUBNET in ip("route", "show", "type", "blackhole"):
        ip("route", "delete", "blackhole", SUBNET, check=False)
        removed.append(f"route blackhole {SUBNET}")
    return removed


def blackhole() -> None:
    """The root namespace's route for SUBNET: nowhere (a connect() from there fails at once)."""
    if SUBNET not in ip("route", "show", "type", "blackhole"):
        ip("route", "add", "blackhole", SUBNET)


class Netns:
    """One network namespace of the tier."""

    def __init__(self, name: str) -> None:
        self.name = f"{PREFIX}-{name}"

    def create(self) -> Netns:
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def ip(self, *args: str, check: bool = True) -> str:
        return ip("-n", self.name, *args, check=check)

    def call(self, function: Callable[..., _T], *args: Any, timeout: float = 120) -> _T:
        """`function(*args)` in a thread of its own that has entered this namespace: every
        socket it opens, and every program it runs and waits for, is inside. Its result, or
        its exception."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                enter(self.name)
                outcome["value"] = function(*args)
            except BaseException as error:  # handed to the caller
                outcome["error"] = error

        thread = threading.Thread(target=run, name=f"in-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{getattr(function, '__name__', function)} in {self.name} "
                               f"still running after {timeout:g}s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def command(self, command: Sequence[str], *, user: str | None = None) -> list[str]:
        """`command` as run inside this namespace, dying with its parent, maybe as `user`."""
        drop = ["--reuid", user, "--regid", user, "--init-groups"] if user else []
        return ["ip", "netns", "exec", self.name, "setpriv", "--pdeathsig", "KILL", *drop, "--",
                *command]

    def popen(self, command: Sequence[str], *, log: IO[bytes] | None = None,
              env: dict[str, str] | None = None, cwd: Path | str | None = None,
              user: str | None = None) -> subprocess.Popen[bytes]:
        """A long-lived process in this namespace, in a session of its own (so its group can
        be signalled). Main thread only: its death signal follows the forking thread."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("long-lived processes are started from the main thread only")
        return subprocess.Popen(self.command(command, user=user), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)

    def run(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A short command inside this namespace; its output."""
        return subprocess.run(["ip", "netns", "exec", self.name, *command], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"


def enter(name: str) -> None:
    """Moves the calling thread (only it) into namespace `name`, for good."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def stop(process: subprocess.Popen[bytes] | None, *, grace: float = 10.0,
         sig: int = signal.SIGTERM) -> int | None:
    """Signals the process group of `process` (`sig`, then SIGKILL after `grace` seconds);
    its exit code (None if it never ran)."""
    if process is None:
        return None
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # what it forked goes too
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process.returncode
