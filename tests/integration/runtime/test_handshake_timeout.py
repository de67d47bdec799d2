"""A service port closes a connection that does not finish its TLS handshake in time: without a
certificate, a client that sends nothing must not hold a connection for grpc's default 120 s."""

from __future__ import annotations

import asyncio
import socket
import time

from services.common.admission import Admission, CallerRules
from services.common.server import HANDSHAKE_TIMEOUT_SECONDS, create_server
from tests.trust import session_state_dir, tls_for


def _seconds_until_closed(port: int, limit: float) -> float | None:
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        started = time.monotonic()
        try:
            assert sock.recv(1) == b""
        except TimeoutError:
            return None
        return time.monotonic() - started


async def test_a_connection_that_never_handshakes_is_closed() -> None:
    running = await create_server([], tls=tls_for(session_state_dir(), "fake"),
                                  admission=Admission(CallerRules.allow_all()),
                                  handshake_timeout=0.5)
    try:
        took = await asyncio.to_thread(_seconds_until_closed, running.port, 10)
    finally:
        await running.stop(0)
    assert took is not None, "the silent connection was kept for over 10 s"
    assert took >= 0.4


def test_the_services_handshake_timeout_is_short() -> None:
    assert 0 < HANDSHAKE_TIMEOUT_SECONDS <= 10
