"""What gateway/edge/protocol.py takes for granted about uvicorn and httptools, and how the
gateway configures it. Its behaviour is tested on a real server, in
tests/integration/gateway/test_protocol.py."""

import hashlib
import inspect
import pickle

import httptools
import pytest
from pydantic import ValidationError
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway.edge import server
from gateway.edge.admission import Admission
from gateway.edge.protocol import BoundedHeadProtocol, ConnectionLimits, bounded_protocol
from gateway.settings import GatewaySettings

# The uvicorn code the protocol overrides, copies (data_received) or relies on, as of 0.55.0
# (and the cycle's send, which gateway/edge/onewrite.py mirrors).
UVICORN_SOURCES = {
    "HttpToolsProtocol.__init__": "4f0899941034",
    "HttpToolsProtocol.connection_made": "6efb565ff3d3",
    "HttpToolsProtocol.connection_lost": "c91a4c9bf2e2",
    "HttpToolsProtocol.data_received": "010a7ae59a5d",
    "HttpToolsProtocol.on_message_begin": "96d377fdc7c2",
    "HttpToolsProtocol.on_url": "37be44e962b0",
    "HttpToolsProtocol.on_header": "1e86ebb6cea0",
    "HttpToolsProtocol.on_headers_complete": "1ea8589acfad",
    "HttpToolsProtocol.on_message_complete": "1fbad42dc31f",
    "HttpToolsProtocol.on_response_complete": "64e254f28e38",
    "HttpToolsProtocol._unset_keepalive_if_required": "00a6a4e47214",
    "HttpToolsProtocol._start_asgi_task": "8d0189e65525",
    "HttpToolsProtocol._should_upgrade": "8fcad1ab8e09",
    "HttpToolsProtocol._should_upgrade_to_ws": "d580849b4df8",
    "HttpToolsProtocol.timeout_keep_alive_handler": "8b53bf5f2e20",
    "RequestResponseCycle.__init__": "4d2f220910c3",
    "RequestResponseCycle.receive": "8124ae006be7",
    "RequestResponseCycle.send": "abdd8601b326",
}


def test_the_uvicorn_code_the_protocol_builds_on_is_unchanged():
    owners = {"HttpToolsProtocol": HttpToolsProtocol, "RequestResponseCycle": RequestResponseCycle}
    changed = []
    for name, digest in UVICORN_SOURCES.items():
        owner, _, method = name.partition(".")
        source = inspect.getsource(getattr(owners[owner], method))
        if hashlib.sha256(source.encode()).hexdigest()[:12] != digest:
            changed.append(name)
    assert changed == [], (
        f"uvicorn changed {changed}: read them against gateway/edge/protocol.py (which "
        "overrides, copies or calls them), fix the protocol, then record the new digests")


def test_httptools_reports_a_callback_exception_as_the_context_of_its_error():
    # The protocol stops the parser mid-feed this way (its _Refusal).
    class Stop(Exception):
        pass

    class Callbacks:
        def on_header(self, name: bytes, value: bytes) -> None:
            raise Stop

    parser = httptools.HttpRequestParser(Callbacks())
    with pytest.raises(httptools.HttpParserCallbackError) as caught:
        parser.feed_data(memoryview(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: b\r\n\r\n"))
    assert isinstance(caught.value.__context__, Stop)


def test_the_configured_protocol_pickles_for_spawned_workers():
    limits = ConnectionLimits(head_timeout=3, max_target_bytes=4096, max_header_bytes=8192)
    admission = Admission(limit=7)
    factory = pickle.loads(pickle.dumps(bounded_protocol(limits, admission)))
    assert factory.func is BoundedHeadProtocol
    assert factory.keywords == {"limits": limits, "admission": admission}


def test_run_gateway_passes_the_connection_limits_and_keepalive_to_uvicorn(monkeypatch):
    settings = GatewaySettings(head_timeout_seconds=7, keepalive_timeout_seconds=3,
                               max_header_bytes=4096, max_target_bytes=2048, max_in_flight=9,
                               send_timeout_seconds=4)
    calls = []
    monkeypatch.setattr(server, "get_settings", lambda: settings)
    monkeypatch.setattr(server.uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    assert server.run_gateway(host="127.0.0.1", port=0) == 0
    (kwargs,) = calls
    assert kwargs["timeout_keep_alive"] == 3
    assert kwargs["http"].keywords["limits"] == ConnectionLimits(7, 2048, 4096, 4)
    assert kwargs["http"].keywords["admission"].limit == 9


def test_the_head_settings_have_safe_defaults_and_floors():
    settings = GatewaySettings()
    assert (settings.head_timeout_seconds, settings.keepalive_timeout_seconds,
            settings.send_timeout_seconds, settings.max_header_bytes,
            settings.max_target_bytes) == (10, 5, 10, 16384, 8192)
    for bad in ({"head_timeout_seconds": 0}, {"keepalive_timeout_seconds": 0},
                {"send_timeout_seconds": 0}, {"max_header_bytes": 1023},
                {"max_target_bytes": 255}):
        with pytest.raises(ValidationError):
            GatewaySettings(**bad)
