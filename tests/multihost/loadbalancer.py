"""HAProxy in front of the three gateways, on its own machine (pmh-lb), and its runtime API.

What the configuration says, and why:
- health checks `GET /healthz` every 0.5 s, down after 2 failures: `/readyz` would take every
  gateway out at once while Redis fails over, although the gateways keep serving then;
- `option http-server-close`: a new connection to a gateway per request, so HAProxy never
  re-uses an idle connection the gateway is closing (its keep-alive is 5 s), and a drained
  gateway keeps no connection once its last answer is sent;
- `timeout server 6s`, above the gateways' own upstream deadline (5 s): a gateway that lives
  always answers first, so the timeout fires only for one that is gone;
- `retry-on conn-failure empty-response response-timeout` with `option redispatch 1`: a
  request that could not reach a gateway, or whose gateway vanished under it, is sent to
  another one; but a POST without an Idempotency-Key is retried only when it was never sent
  (`disable-l7-retry`), since repeating it could place a second order;
- `option http-buffer-request`: the whole request (a small JSON body) is read before a gateway
  is picked; HAProxy retries only a request it holds whole, and a body that arrived after the
  head was forwarded (httpx writes them apart) made a keyed order in flight on a lost gateway
  end in a 504 instead of being sent to another;
- `option forwardfor`: the gateways trust the balancer's address (PORTICO_TRUSTED_PROXIES), so
  each client keeps its own rate-limit bucket.

The runtime API is a Unix socket in the file system: the test reaches it from the root
namespace without a packet on the tier's network.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.multihost.namespaces import stop
from tests.multihost.topology import Machine

BACKEND = "gateways"
PORT = 80


def haproxy_executable() -> str | None:
    return shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
         if Path(path).exists()), None)


class LoadBalancer:
    def __init__(self, machine: Machine, gateways: dict[str, str], root: Path) -> None:
        self.machine = machine
        self.gateways = gateways           # server name -> address:port
        self.root = root
        self.socket_path = root / "admin.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.machine.address}:{PORT}"

    def config(self) -> str:
        servers = "\n".join(f"    server {name} {address}" for name, address in
                            self.gateways.items())
        return f"""# Written by tests/multihost/loadbalancer.py
global
    stats socket {self.socket_path} mode 600 level admin
    maxconn 4096
    log stdout format raw local0 notice

defaults
    mode http
    log global
    timeout connect 1s
    timeout client 30s
    timeout server 6s
    timeout queue 5s
    timeout check 1s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    option http-server-close
    option http-buffer-request
    option forwardfor

frontend api
    bind {self.machine.address}:{PORT}
    http-request disable-l7-retry if METH_POST !{{ req.hdr(idempotency-key) -m found }}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
{servers}
"""

    def start(self, timeout: float = 20) -> LoadBalancer:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "haproxy.cfg"
        config.write_text(self.config())
        with (self.root / "haproxy.log").open("ab") as log:
            self.process = self.machine.netns.popen(
                [haproxy_executable() or "haproxy", "-f", str(config), "-db"], log=log)
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists() or not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited; see {self.root / 'haproxy.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError("haproxy's runtime API did not answer")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        stop(self.process, grace=5)

    def _answers(self) -> bool:
        try:
            return "Name" in self.command("show info")
        except OSError:
            return False

    def command(self, line: str) -> str:
        """One runtime API command; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers as `show stat` reports them (status, scur = sessions now,
        stot = sessions in all...)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows
                if row["pxname"] == BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")}

    def up(self) -> set[str]:
        return {name for name, row in self.servers().items() if row["status"] == "UP"}

    def set_state(self, server: str, state: str) -> None:
        """`ready`, `drain` or `maint`."""
        answer = self.command(f"set server {BACKEND}/{server} state {state}").strip()
        if answer:
            raise RuntimeError(f"set server {server} state {state}: {answer}")

    def remove(self, server: str) -> None:
        """Deletes a server (in maintenance) from the running balancer."""
        answer = self.command(f"del server {BACKEND}/{server}").strip()
        if "Server deleted" not in answer:
            raise RuntimeError(f"del server {server}: {answer}")

    def add(self, server: str, address: str) -> None:
        """Adds a server back to the running balancer, health-checked like the others."""
        answer = self.command(f"add server {BACKEND}/{server} {address} check inter 500ms "
                              "fall 2 rise 2").strip()
        if "New server registered" not in answer:
            raise RuntimeError(f"add server {server}: {answer}")
        for line in (f"enable health {BACKEND}/{server}", f"enable server {BACKEND}/{server}"):
            self.command(line)
