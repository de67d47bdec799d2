"""A real uvicorn server with the gateway's protocol (its own thread and loop, a free port)
serving a tiny app, and raw-socket HTTP/1.1 to talk to it: for the protocol's own tests."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from gateway.edge.admission import Admission
from gateway.edge.protocol import REFUSAL, BoundedHeadProtocol, ConnectionLimits
from services.common.pki import write_issued
from tests.trust import session_state_dir, tls_for

LIMITS = ConnectionLimits()  # the defaults: 8 KiB of target, 16 KiB of header names + values
WAIT = 10.0  # seconds any single read may take before a test fails


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the refusal mark as its status (else 200) and what it saw, as JSON."""
    body, more = b"", True
    for _ in range(10_000):
        if not more:
            break
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    mark = scope.get("extensions", {}).get(REFUSAL)
    answer = json.dumps({
        "mark": mark, "method": scope["method"], "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": len(scope["headers"]), "body": body.decode("latin-1")}).encode()
    await send({"type": "http.response.start", "status": mark or 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})


@dataclass
class Served:
    port: int
    fed: list[int] = field(default_factory=list)  # bytes_fed of each connection, once lost
    queued: int = 0  # the most requests a connection had parsed and waiting for their turn
    unparsed: int = 0  # the most bytes a connection had read but not parsed
    ca: Path | None = None  # HTTPS: the CA to check the server's certificate against


@contextlib.contextmanager
def serve(*, head_timeout: float = 10.0, keepalive: float = 30.0, app: Any = echo_app,
          admission: Admission | None = None, lifespan: str = "off",
          send_timeout: float = 10.0, tls: Path | None = None) -> Iterator[Served]:
    """The protocol with the default size limits in a uvicorn server on 127.0.0.1:0 (`lifespan`
    "on" starts the app in the server's own loop, for an app whose I/O is bound to it; `tls`, a
    directory to write a certificate of the session's CA in, serves HTTPS)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    served = Served(port=listener.getsockname()[1])
    https = {}
    if tls is not None:
        ca, cert, key = write_issued(tls, "gateway", tls_for(session_state_dir(), "gateway"))
        https = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        served.ca = ca

    class Recording(BoundedHeadProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            served.fed.append(self.bytes_fed)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            served.queued = max(served.queued, len(self.pipeline))
            served.unparsed = max(served.unparsed, len(self._unfed))

    limits = ConnectionLimits(head_timeout=head_timeout, send_timeout=send_timeout)
    config = uvicorn.Config(app, http=functools.partial(Recording, limits=limits,
                                                        admission=admission),
                            lifespan=lifespan, log_config=None, access_log=False,
                            timeout_keep_alive=keepalive, **https)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        assert server.started, "the test server did not start"
        yield served
    finally:
        server.should_exit = True
        thread.join(WAIT)
        listener.close()


@contextlib.contextmanager
def connect(served: Served, *, receive_buffer: int | None = None) -> Iterator[socket.socket]:
    """A connection to `served` (TLS when it serves HTTPS); `receive_buffer` caps the kernel's
    receive buffer, for a client that reads slowly."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", served.port))
    if served.ca is not None:
        context = ssl.create_default_context(cafile=str(served.ca))
        context.check_hostname = False  # the certificate names the development hosts
        sock = context.wrap_socket(sock)
    try:
        yield sock
    finally:
        sock.close()


def read_response(reader: Any) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    """One response from a socket's file: status, headers, JSON body."""
    status_line = reader.readline(1024)
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[bytes, bytes] = {}
    for _ in range(100):
        line = reader.readline(65536).rstrip(b"\r\n")
        if not line:
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers[b"content-length"]))
    return int(status_line.split()[1]), headers, json.loads(body)


def closed(sock: socket.socket, within: float = WAIT) -> bool:
    """True when the peer closes (EOF or reset) within `within` s without sending anything."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def request(target: str = "/", *headers: tuple[str, str], body: bytes = b"",
            method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: test", *(f"{n}: {v}" for n, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


