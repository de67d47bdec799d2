"""The request-head bounds of gateway/edge/protocol.py, on a real uvicorn server (its own thread
and loop, a free port) serving a tiny app, talked to over raw sockets."""

from __future__ import annotations

import asyncio
import logging
import select
import time

import pytest
from prometheus_client import REGISTRY

from gateway.edge.admission import Admission
from gateway.edge.protocol import MAX_PIPELINED, PARSE_SLICE
from tests.integration.gateway.rawhttp import (
    LIMITS,
    echo_app,
    closed,
    connect,
    read_response,
    request,
    serve,
)
from tests.logrecords import Kept

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


# Writing


def answering(size: int):
    """An app that answers every request with `size` bytes."""
    body = b"x" * size

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_a_client_that_stops_reading_is_cut_off_and_its_request_freed(https, tmp_path) -> None:
    # Pipelined requests for a large answer, never read: once the kernel's buffers are full
    # the server's writes stall, and a request waiting to write stays in flight for good
    # (uvicorn has no send timeout), which counts against the in-flight limit of everyone.
    # Over TLS the transport and the socket under it are the TLS layer's.
    admission = Admission(limit=64)
    with serve(app=answering(1 << 20), send_timeout=0.5, admission=admission,
               tls=tmp_path if https else None) as served, connect(served) as sock:
        sock.sendall(request("/large") * 40)
        deadline = time.monotonic() + 10
        while (not served.fed or admission.in_flight) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served.fed, "the connection of a client that reads nothing was kept"
        assert admission.in_flight == 0, "its request stayed in flight"


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_a_slow_but_steady_reader_gets_its_whole_answer(https, tmp_path) -> None:
    # Writing stays paused for far longer than the send timeout, but the client takes some of
    # the answer all the while: that is not a client that stopped reading.
    size = 8 << 20
    with serve(app=answering(size), send_timeout=0.3, tls=tmp_path if https else None) \
            as served, connect(served, receive_buffer=32 * 1024) as sock:
        sock.sendall(request("/large"))
        got = 0
        for _ in range(100_000):
            chunk = sock.recv(64 * 1024)
            got += len(chunk)
            if not chunk or got >= size:
                break
            time.sleep(0.02)
    assert got >= size, f"cut off after {got:,} bytes"

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


def test_a_flood_of_pipelined_requests_is_parsed_a_few_at_a_time_and_all_answered() -> None:
    # 3,000 minimal requests in one write are 87 KB, a read or two: parsed at once, each would
    # be a request object queued in memory (about 2.5 KB each, 90 times its bytes). At most
    # a few dozen are queued; the rest waits as bytes, and every one is answered in order.
    count = 3_000
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"".join(request(f"/p{i}") for i in range(count)))
        paths = [read_response(reader)[2]["path"] for _ in range(count)]
    assert paths == [f"/p{i}" for i in range(count)]
    assert served.queued <= MAX_PIPELINED + PARSE_SLICE // 18, served.queued


def test_a_client_that_keeps_pipelining_while_its_requests_wait_is_not_read() -> None:
    # While parsed requests wait their turn, what was read but not parsed waits as bytes: more
    # must not be read meanwhile, or those bytes grow with everything the client sends.
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(0.05)
        await echo_app(scope, receive, send)

    with serve(app=slow) as served, connect(served) as sock:
        sock.setblocking(False)
        wire = request("/p") * 40_000  # 1.2 MB
        sent, deadline = 0, time.monotonic() + 3
        while sent < len(wire) and time.monotonic() < deadline:
            try:
                sent += sock.send(wire[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.3)
    assert served.unparsed <= 256 * 1024, served.unparsed  # a read or two (128 KiB each)


def test_a_refusal_pipelined_behind_a_request_waits_its_turn() -> None:
    fills = [(f"X-Fill-{i}", "a" * 4096) for i in range(5)]
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/one") + request("/two", *fills))
        assert [read_response(reader)[0] for _ in range(2)] == [200, 431]
        assert reader.read(1) == b""


def test_expect_100_continue_works_as_in_uvicorn() -> None:
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


# What does not parse

UNPARSABLE = {
    "a bare LF": b"GET /things HTTP/1.1\nHost: test\n\n",
    "no such method": b"FETCH /things HTTP/1.1\r\nHost: test\r\n\r\n",
    "two lengths": b"POST /things HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\n"
                   b"Content-Length: 2\r\n\r\nab",
    "a folded header": b"GET /things HTTP/1.1\r\nHost: test\r\nX-A: a\r\n b\r\n\r\n",
    "bad chunk framing": b"POST /things HTTP/1.1\r\nHost: test\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
}


@pytest.mark.parametrize("wire", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_what_does_not_parse_is_a_problem_400_and_no_warning(wire: bytes) -> None:
    counted = {"route": "malformed", "method": "other", "status": "400"}
    before = REGISTRY.get_sample_value("portico_http_requests_total", counted) or 0
    kept = Kept(logging.DEBUG)
    logging.getLogger().addHandler(kept)
    try:
        with serve() as served, connect(served) as sock:
            sock.sendall(wire)
            reader = sock.makefile("rb")
            status, headers, problem = read_response(reader)
            assert closed(sock)
    finally:
        logging.getLogger().removeHandler(kept)
    assert (status, problem["status"], problem["code"]) == (400, 400, "MALFORMED_REQUEST")
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"connection"] == b"close"
    assert headers[b"x-request-id"].decode() == problem["request_id"]
    assert headers[b"x-content-type-options"] == b"nosniff"
    # The client's error, not the server's: nothing at WARNING or above.
    assert [r.getMessage() for r in kept.records if r.levelno >= logging.WARNING] == []
    assert REGISTRY.get_sample_value("portico_http_requests_total", counted) == before + 1


# Upgrades: the gateway offers none (no WebSocket, no h2c)

UPGRADES = (("Upgrade", "websocket"), ("Upgrade", "h2c"))


@pytest.mark.parametrize("upgrade", UPGRADES, ids=["websocket", "h2c"])
def test_a_request_asking_for_an_upgrade_is_answered_as_http_then_the_connection_closes(
        upgrade) -> None:
    # The parser stops where the upgraded protocol would begin, so nothing after the request
    # (here a pipelined one) is read: the connection closes after the answer.
    kept = Kept(logging.DEBUG)
    logging.getLogger().addHandler(kept)
    try:
        with serve() as served, connect(served) as sock:
            reader = sock.makefile("rb")
            sock.sendall(request("/things", ("Connection", "Upgrade"), upgrade,
                                 ("Sec-WebSocket-Version", "13"),
                                 ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
                         + request("/pipelined"))
            status, headers, seen = read_response(reader)
            assert (status, seen["path"], seen["mark"]) == (200, "/things", None)
            assert headers[b"connection"] == b"close"
            assert closed(sock)
    finally:
        logging.getLogger().removeHandler(kept)
    # Not a server problem: no error, no warning (uvicorn's own logs a warning per request).
    assert [r.getMessage() for r in kept.records if r.levelno >= logging.WARNING] == []


def test_a_request_asking_for_an_upgrade_with_a_body_is_refused() -> None:
    # The parser hands what follows the head to the upgraded protocol, so such a request
    # would reach the app without its body: it is refused instead, and the connection ends.
    with serve() as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/things", ("Connection", "Upgrade"), ("Upgrade", "websocket"),
                             ("Content-Type", "application/json"), body=b'{"a": 1}',
                             method="POST"))
        status, _, seen = read_response(reader)
        assert (status, seen["mark"], seen["body"]) == (400, 400, "")
        assert closed(sock)


def test_every_request_refused_or_not_is_answered_through_the_one_write_cycle() -> None:
    cycles: list[str] = []

    async def app(scope, receive, send) -> None:
        cycles.append(type(send.__self__).__name__)
        await echo_app(scope, receive, send)

    fills = [(f"X-Fill-{i}", "a" * 4096) for i in range(5)]
    with serve(app=app) as served, connect(served) as sock:
        reader = sock.makefile("rb")
        sock.sendall(request("/one") + request("/two") + request("/three", *fills))
        assert [read_response(reader)[0] for _ in range(3)] == [200, 200, 431]
    assert cycles == ["OneWriteCycle"] * 3
