"""The request-head bounds of gateway/edge/protocol.py, on a real uvicorn server (its own thread
and loop, a free port) serving a tiny app, talked to over raw sockets."""

from __future__ import annotations

import contextlib
import functools
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from gateway.edge.protocol import REFUSAL, BoundedHeadProtocol, HeadLimits

LIMITS = HeadLimits()  # the defaults: 8 KiB of target, 16 KiB of header names + values
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


@contextlib.contextmanager
def serve(*, head_timeout: float = 10.0, keepalive: float = 30.0) -> Iterator[Served]:
    """The protocol with the default size limits in a uvicorn server on 127.0.0.1:0."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    served = Served(port=listener.getsockname()[1])

    class Recording(BoundedHeadProtocol):
        def connection_lost(self, exc: Exception | None) -> None:
            served.fed.append(self.bytes_fed)
            super().connection_lost(exc)

    limits = HeadLimits(head_timeout=head_timeout)
    config = uvicorn.Config(echo_app, http=functools.partial(Recording, limits=limits),
                            lifespan="off", log_config=None, access_log=False,
                            timeout_keep_alive=keepalive)  # type: ignore[arg-type]
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
def connect(served: Served) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=WAIT)
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


# Deadline and keep-alive


def test_a_half_sent_head_is_closed_at_the_deadline() -> None:
    with serve(head_timeout=0.5) as served, connect(served) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /things HTTP/1.1\r\nHost: test\r\nX-Half: ")
        assert closed(sock)
        assert time.monotonic() - started >= 0.45  # not before the deadline


def test_a_trickled_head_is_closed_at_the_deadline() -> None:
    head = request("/things", ("X-Slow", "a" * 100))  # 10+ s at one byte per 0.1 s
    with serve(head_timeout=0.5) as served, connect(served) as sock:
        started, sent, ended = time.monotonic(), 0, False
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                ended = True
                break
            sent += 1
            if select.select([sock], [], [], 0.1)[0]:
                ended = closed(sock, 0)
                break
        assert ended and sent < len(head)
        assert time.monotonic() - started >= 0.45


def test_the_deadline_restarts_when_a_response_completes() -> None:
    with serve(head_timeout=0.5) as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/first"))
        assert read_response(reader)[0] == 200
        sock.sendall(b"GET /second HTTP/1.1\r\n")
        assert closed(sock)


def test_an_idle_keepalive_connection_is_closed_by_uvicorn() -> None:
    # The head deadline is far off: only the keep-alive timeout can close this one.
    with serve(head_timeout=60, keepalive=0.5) as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/things"))
        assert read_response(reader)[0] == 200
        assert closed(sock)


def test_a_head_completed_in_time_is_served() -> None:
    with serve(head_timeout=10) as served, connect(served) as sock:
        reader = sock.makefile("rb")
        head = request("/things", ("X-Part", "one"))
        sock.sendall(head[:20])
        time.sleep(0.2)
        sock.sendall(head[20:])
        status, _, seen = read_response(reader)
        assert (status, seen["mark"], seen["path"]) == (200, None, "/things")


# Sizes


def test_a_header_block_over_the_limit_gets_431_and_the_connection_ends() -> None:
    fills = [(f"X-Fill-{i}", "a" * 4096) for i in range(5)]  # 20 KiB of headers
    fit, total = 0, 0
    for name, value in [("Host", "test"), *fills]:
        total += len(name) + len(value)
        fit += total <= LIMITS.max_header_bytes
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        # A request pipelined behind it is never read.
        sock.sendall(request("/things?x=1", *fills) + request("/after"))
        status, headers, seen = read_response(reader)
        assert (status, seen["mark"], seen["headers"]) == (431, 431, fit)
        assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
            "GET", "/things", "", "")
        assert headers[b"connection"] == b"close"
        assert reader.read(1) == b""


def test_a_refused_request_never_sees_its_body() -> None:
    fills = [(f"X-Fill-{i}", "a" * 4096) for i in range(5)]
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/things", ("Expect", "100-continue"), *fills, method="POST",
                             body=b'{"a": 1}'))
        status, _, seen = read_response(reader)  # no 100 Continue came first
        assert (status, seen["method"], seen["body"]) == (431, "POST", "")


def test_a_target_over_the_limit_gets_414_with_the_headers_that_fit() -> None:
    target = "/" + "a" * (10 * 1024) + "?q=1"
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request(target, ("X-Request-ID", "abc")))
        status, headers, seen = read_response(reader)
        assert (status, seen["mark"], seen["headers"], seen["query"]) == (414, 414, 2, "")
        assert seen["path"] == seen["raw_path"] == target[:LIMITS.max_target_bytes]
        assert headers[b"connection"] == b"close"
        assert reader.read(1) == b""


def test_a_target_past_the_whole_budget_gets_414() -> None:
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/" + "b" * (60 * 1024)))
        status, _, seen = read_response(reader)
        assert (status, seen["headers"], len(seen["path"])) == (414, 0, LIMITS.max_target_bytes)


def test_a_streamed_megabyte_header_is_refused_without_being_fed() -> None:
    chunk = b"a" * (16 * 1024)
    with serve() as served:
        with connect(served) as sock:
            reader = sock.makefile("rb")
            sock.sendall(b"GET /things HTTP/1.1\r\nHost: test\r\nX-Big: ")
            sent = 0
            for _ in range(64):  # 1 MiB, unless the server answers first
                if select.select([sock], [], [], 0)[0]:
                    break
                try:
                    sock.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(chunk)
            status, _, seen = read_response(reader)
            assert (status, seen["mark"], seen["headers"]) == (431, 431, 1)
        for _ in range(100):
            if served.fed:
                break
            time.sleep(0.05)
        # The parser got the head's budget, not the megabyte (nor what the client sent).
        assert served.fed and served.fed[0] <= LIMITS.wire_budget < sent


def test_a_flood_of_empty_lines_is_refused_too() -> None:
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"\r\n" * LIMITS.wire_budget)
        status, _, seen = read_response(reader)
        assert (status, seen["method"], seen["path"], seen["headers"]) == (431, "GET", "/", 0)


def test_a_head_just_under_both_limits_is_served() -> None:
    target = "/" + "c" * (LIMITS.max_target_bytes - 1)
    room = LIMITS.max_header_bytes - len("Host") - len("test")
    fills = [(f"X-Fill-{i}", "d" * (room // 5 - 8)) for i in range(4)]
    fills.append(("X-Last", "e" * (room - sum(len(n) + len(v) for n, v in fills) - 6)))
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request(target, *fills))
        status, _, seen = read_response(reader)
        assert (status, seen["mark"], seen["headers"], seen["path"]) == (200, None, 6, target)


# Everything else is uvicorn's


def test_a_body_and_two_pipelined_requests_are_served_on_one_connection() -> None:
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/orders", body=b'{"n": 1}', method="POST"))
        status, _, seen = read_response(reader)
        assert (status, seen["body"]) == (200, '{"n": 1}')
        sock.sendall(request("/one") + request("/two?x=2"))
        answers = [read_response(reader) for _ in range(2)]
        assert [(s, b["path"], b["query"]) for s, _, b in answers] == [
            (200, "/one", ""), (200, "/two", "x=2")]


def test_a_refusal_pipelined_behind_a_request_waits_its_turn() -> None:
    fills = [(f"X-Fill-{i}", "a" * 4096) for i in range(5)]
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/one") + request("/two", *fills))
        assert [read_response(reader)[0] for _ in range(2)] == [200, 431]
        assert reader.read(1) == b""


def test_expect_100_continue_and_an_unsupported_upgrade_work_as_in_uvicorn() -> None:
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        head = request("/orders", ("Expect", "100-continue"), ("Content-Length", "5"),
                       method="POST")
        sock.sendall(head)
        assert reader.readline(1024).startswith(b"HTTP/1.1 100 ")
        assert reader.readline(1024) == b"\r\n"
        sock.sendall(b"hello")
        status, _, seen = read_response(reader)
        assert (status, seen["body"]) == (200, "hello")
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/things", ("Connection", "Upgrade"), ("Upgrade", "h2c")))
        assert read_response(reader)[0] == 200
