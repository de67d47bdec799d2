"""An OTLP trace receiver on loopback, for the tests and the benchmark: OTLP/gRPC (the
TraceService's Export) and OTLP/HTTP (POST /v1/traces, http/protobuf) on a port each, decoding
the real protobuf messages of `opentelemetry-proto`.

It keeps every span it is sent, with the name of the service that sent it (the tests read the
whole trace), or with `keep=False` answers every export at once without even decoding it (the
benchmark: tracing's cost is the exporting process's, not a collector's).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

_EMPTY = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as exported, and the `service.name` of the process that sent it."""

    service: str
    span: trace_pb2.Span

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, object]:
        return {a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                for a in self.span.attributes}


class OtlpReceiver:
    """Receives OTLP trace exports on 127.0.0.1 until `stop()`."""

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.exports = 0
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self.grpc_endpoint = self.http_endpoint = ""

    def start(self) -> OtlpReceiver:
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            lambda body, context: self._received(body) or _EMPTY)   # raw bytes both ways
        self._grpc.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": handler}),))
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_endpoint = f"http://127.0.0.1:{port}"
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(self._received))
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.http_endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], *, timeout: float = 15.0,
                 settle: float = 0.0) -> list[ReceivedSpan]:
        """The spans once `done(spans)` holds (then `settle` seconds more, for late ones), or
        what came within `timeout` when it never does."""
        deadline = time.monotonic() + timeout
        while not done(self.spans()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle)
        return self.spans()

    def _received(self, body: bytes) -> None:
        with self._lock:
            self.exports += 1
        if not self.keep:
            return
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                received += [ReceivedSpan(service, span) for span in scope_spans.spans]
        with self._lock:
            self._spans += received


def _http_handler(received: Callable[[bytes], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            received(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(_EMPTY)))
            self.end_headers()
            self.wfile.write(_EMPTY)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the tests' output is theirs

    return Handler
