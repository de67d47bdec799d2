"""Private local servers run as child processes, for the tests and `portico up`: the part
every kind of server shares (a free port, a data directory, start, stop, the log's tail).

Each server keeps its data and its log (`<name>.log`) under the one directory it is given,
listens on 127.0.0.1 (or the one address `host` names: the multi-host tests bind servers to the
addresses of their network namespaces), and runs in a session of its own so that Ctrl-C reaches
it only through its owner's `stop()`.
"""

from __future__ import annotations

import abc
import atexit
import ctypes
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from services.common.files import create_once

LOCALHOST = "127.0.0.1"
_LOG_TAIL_LINES = 25


# find_free_port's ports: up to 20,000 below the ephemeral range, none under 10,000.
_LOWEST_PORT, _PORTS_BELOW = 10_000, 20_000
_handed_out: set[int] = set()


def find_free_port(hosts: Sequence[str] = (LOCALHOST,)) -> int:
    """A TCP port that nothing is bound to right now on any of `hosts` and that this process has
    not handed out before, below the kernel's ephemeral range. A port from that range (what
    binding port 0 gives), free when probed, can be taken as the local port of any outgoing
    connection before its server binds it (a service of a test's stack once failed to start so).
    Below the range only explicit binds compete."""
    low = _ephemeral_low()
    candidates = range(max(_LOWEST_PORT, low - _PORTS_BELOW), low)
    for _ in range(200 if candidates else 0):
        port = random.choice(candidates)
        if port not in _handed_out and all(_bindable(host, port) for host in hosts):
            _handed_out.add(port)
            return port
    # An ephemeral range that leaves nothing below it: the kernel's choice, as before.
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((hosts[0], 0))
            port = int(sock.getsockname()[1])
        if all(_bindable(host, port) for host in hosts[1:]):
            return port
    raise RuntimeError(f"no TCP port free on every one of {', '.join(hosts)}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedServerError(RuntimeError):
    """A private server could not be prepared or started; the message ends with its log."""


class EmbeddedServer(abc.ABC):
    """A database server run as a child process, its data and log under `data_dir`.

    The port is fixed when the object is made (a free one unless given) so that `url` is known
    before `start()` and stays the same across `restart()`. Use it as a context manager, or call
    `start()` and `stop()`; servers still running when the interpreter exits are stopped then.
    """

    name = "server"
    # What asks the server to shut down cleanly; SIGKILL follows only after the stop timeout.
    stop_signal = signal.SIGTERM

    def __init__(
        self, data_dir: Path | str, port: int | None = None, *, start_timeout: float = 60.0,
        host: str = LOCALHOST,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port if port is not None else find_free_port()
        self.start_timeout = start_timeout
        # A port we picked may be taken before the server binds it; then we may pick another,
        # but only until the first successful start has made the URL public.
        self._port_fixed = port is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The URL clients connect with."""

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server unless it runs, and wait until it accepts connections."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._prepare()
        try:
            self._launch()
            self._on_ready()
        except BaseException:
            self.stop()  # a half-started server, even one interrupted by Ctrl-C, must not linger
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the server to shut down, kill it after `timeout` seconds; no-op when stopped."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
        self._reap()

    def restart(self) -> Self:
        """Stop, then start again on the same port with the same data."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.data_dir)!r}, port={self.port})"

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    @abc.abstractmethod
    def _accepts_connections(self) -> bool:
        """Whether a client can talk to the server now."""

    def _prepare(self) -> None:
        """Make the data directory ready before the first launch."""

    def _on_ready(self) -> None:
        """Finish setting up once the server accepts connections."""

    def _spawn_options(self) -> dict[str, Any]:
        """Extra `subprocess` options for every program run for this server."""
        return {}

    def _run(self, command: list[str]) -> subprocess.Popen[bytes]:
        options = self._spawn_options()
        if threading.current_thread() is threading.main_thread():
            # A process killed outright runs no atexit: its servers would outlive it. (Not
            # from another thread: the signal comes when the spawning thread ends.)
            options["preexec_fn"] = die_with_parent(self.stop_signal)
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                **options,
            )

    def _launch(self) -> None:
        attempts = 1 if self._port_fixed else 3
        for attempt in range(1, attempts + 1):
            self._process = self._run(self._command())
            _running.add(self)
            if self._wait_until_ready():
                self._port_fixed = True
                return
            self._reap()
            if attempt == attempts:
                raise self._failure("exited during start-up")
            self.port = find_free_port()

    def _wait_until_ready(self) -> bool:
        """True once the server answers, False if it exited first; raises on timeout."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            # Checked again after the probe: ours may have died on a taken port while another
            # server listening there answered in its place.
            if self._accepts_connections() and self._process.poll() is None:
                return True
            time.sleep(0.1)
        _kill_group(self._process.pid)
        self._reap()
        raise self._failure(f"did not accept connections within {self.start_timeout:g}s")

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            # Helpers the server forked (a Redis snapshot, a backend) must not outlive it.
            _kill_group(self._process.pid)
        self._process = None
        _running.discard(self)

    def _failure(self, reason: str) -> EmbeddedServerError:
        tail = _read_tail(self.log_path, self._log_offset)
        return EmbeddedServerError(
            f"{self.name} on {self.host}:{self.port} {reason}; last lines of {self.log_path}:\n"
            f"{tail}"
        )


def stored_password(path: Path) -> str:
    """The password kept in `path` (mode 0600), made once: two processes asking at once get
    the same one."""
    if not path.exists():
        create_once(path, (secrets.token_urlsafe(24) + "\n").encode(), mode=0o600)
    return path.read_text().strip()


def find_executable(name: str, hint: str) -> str:
    # The venv's own bin first: console scripts live there even when the venv is not activated.
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise EmbeddedServerError(f"{name} not found on PATH; {hint}")
    return found


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_tail(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:]) or "(log empty)"


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` after which the kernel sends the child `sig` when the thread that spawned
    it ends (PR_SET_PDEATHSIG): a parent killed outright takes its children along."""
    def preexec() -> None:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG

    return preexec


_running: set[EmbeddedServer] = set()


@atexit.register
def _stop_running() -> None:
    # The children run in sessions of their own, so nothing else would stop them with us.
    for server in list(_running):
        server.stop()
