"""Load shedding (gateway/edge/admission.py) on a real uvicorn server with the gateway's
protocol: past the in-flight limit a request is answered 503 at once without reaching the app,
probes are never shed, the connection that got a 503 is not read again for a pause, and
the count comes back down when requests end, however they end."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from gateway.edge.admission import Admission
from tests.integration.gateway.rawhttp import (
    WAIT,
    connect,
    echo_app,
    read_response,
    request,
    serve,
)


class Held:
    """An app whose /held requests wait until released; everything else answers at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.inside = 0
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope["path"])
        if scope["path"] == "/held":
            self.inside += 1
            for _ in range(int(WAIT * 100)):
                if self.release.is_set():
                    break
                await asyncio.sleep(0.01)
        body = json.dumps({"path": scope["path"]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_past_the_limit_the_answer_is_an_immediate_503_and_probes_still_pass() -> None:
    app, admission = Held(), Admission(limit=2)
    with serve(app=app, admission=admission) as served, \
            connect(served) as first, connect(served) as second, connect(served) as third, \
            connect(served) as probe:
        for sock in (first, second):
            sock.sendall(request("/held"))
        _wait_for(lambda: app.inside == 2, "the two held requests are inside")
        third.sendall(request("/products/P1"))
        status, headers, body = read_response(third.makefile("rb"))
        probe.sendall(request("/healthz"))
        probe_status, _, _ = read_response(probe.makefile("rb"))
        app.release.set()
        assert [read_response(s.makefile("rb"))[0] for s in (first, second)] == [200, 200]
    assert status == 503 and body["code"] == "OVERLOADED" and body["status"] == 503
    assert headers[b"retry-after"] == b"1"
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"x-request-id"].decode() == body["request_id"]
    assert headers[b"cache-control"] == b"no-store" and b"x-content-type-options" in headers
    assert "/products/P1" not in app.seen  # never reached the app
    assert probe_status == 200
    assert admission.in_flight == 0


def test_a_shed_connection_is_not_read_again_for_a_pause() -> None:
    app, admission = Held(), Admission(limit=1, retry_after=1, pause=1)
    with serve(app=app, admission=admission) as served, \
            connect(served) as holder, connect(served) as eager:
        holder.sendall(request("/held"))
        _wait_for(lambda: app.inside == 1, "the held request is inside")
        eager.sendall(request("/one"))
        reader = eager.makefile("rb")
        assert read_response(reader)[0] == 503
        app.release.set()
        assert read_response(holder.makefile("rb"))[0] == 200
        # Capacity is back at once, but this client asked again without waiting: its request
        # is read only once the pause has passed.
        asked = time.monotonic()
        eager.sendall(request("/two"))
        status, _, body = read_response(reader)
        waited = time.monotonic() - asked
    assert (status, body["path"]) == (200, "/two")
    assert waited >= 0.8, waited


def test_a_shed_request_with_a_body_leaves_the_connection_usable() -> None:
    app, admission = Held(), Admission(limit=1, retry_after=1)
    with serve(app=app, admission=admission) as served, \
            connect(served) as holder, connect(served) as writer:
        holder.sendall(request("/held"))
        _wait_for(lambda: app.inside == 1, "the held request is inside")
        writer.sendall(request("/orders", ("Content-Type", "application/json"),
                               body=b'{"items": []}' * 100, method="POST"))
        reader = writer.makefile("rb")
        assert read_response(reader)[0] == 503
        app.release.set()
        read_response(holder.makefile("rb"))
        writer.sendall(request("/after"))
        assert read_response(reader)[2] == {"path": "/after"}
    assert app.seen.count("/orders") == 0


def test_the_count_comes_down_when_clients_leave_mid_request() -> None:
    app, admission = Held(), Admission(limit=2)
    with serve(app=app, admission=admission) as served:
        for count in (1, 2):  # both slots taken by clients that then leave
            with connect(served) as gone:
                gone.sendall(request("/held"))
                _wait_for(lambda: app.inside == count, "the request is inside")
        assert admission.in_flight == 2
        app.release.set()
        _wait_for(lambda: admission.in_flight == 0, "the abandoned requests ended")
        with connect(served) as later:
            later.sendall(request("/later"))
            assert read_response(later.makefile("rb"))[0] == 200


async def lingering(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers, then keeps the event loop a moment (as a request does that writes its log line
    and metrics after its answer went out)."""
    await echo_app(scope, receive, send)
    time.sleep(0.2)  # the client has its answer and asks again meanwhile


def test_a_request_is_counted_only_until_its_handler_returns() -> None:
    # The loop reads the client's next request before it runs the callbacks of the task that
    # just ended (uvloop does): counting down in a task's done callback would still count the
    # answered request then, and shed a client that is within the limit.
    admission = Admission(limit=1)
    with serve(app=lingering, admission=admission) as served, connect(served) as client:
        reader = client.makefile("rb")
        statuses = []
        for _ in range(3):
            client.sendall(request("/one"))
            statuses.append(read_response(reader)[0])
    assert statuses == [200, 200, 200]
