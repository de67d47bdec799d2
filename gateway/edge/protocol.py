"""uvicorn's httptools protocol with bounds on a connection: a deadline and a size for each
request head, how many parsed requests may wait their turn, a deadline for answers the client
does not read (gateway/edge/writing.py); and answers of its own to what the parser cannot take
(bytes that are not HTTP/1.1, protocol upgrades).

uvicorn bounds neither how long a client may take over a request head nor how large the head
may be, and httptools gathers a whole header value in memory before it reports it. So the
bounds are kept on the bytes fed to the parser, not only in its callbacks.
"""

from __future__ import annotations

import asyncio
import functools
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway import metrics
from gateway.edge.admission import Admission
from gateway.edge.canned import unparsable
from gateway.edge.request import REFUSAL
from gateway.edge.writing import WriteDeadlineProtocol

# The parser is fed this much at a time, and no more while this many parsed requests wait for
# their turn: a request parsed costs about 2.5 KB of memory, so one read of minimal pipelined
# requests (18 bytes each) parsed at once would cost some 90 times its size.
PARSE_SLICE = 2048
MAX_PIPELINED = 16
# What a head may take on the wire beyond its target and header block: the method and version,
# ": " and CRLF of each header line, whitespace around values (about a thousand lines' worth).
FRAMING_BYTES = 4096


@dataclass(frozen=True)
class ConnectionLimits:
    """What BoundedHeadProtocol allows a request head (seconds, then bytes), and how long an
    answer may wait for the client to read."""

    head_timeout: float = 10.0
    max_target_bytes: int = 8 * 1024
    max_header_bytes: int = 16 * 1024
    send_timeout: float = 10.0

    @property
    def wire_budget(self) -> int:
        """Bytes of one head the parser is fed, at most (see on_message_complete)."""
        return self.max_target_bytes + self.max_header_bytes + FRAMING_BYTES


def bounded_protocol(limits: ConnectionLimits,
                     admission: Admission | None = None) -> Callable[..., BoundedHeadProtocol]:
    """What uvicorn's `http=` takes. A partial, not a generated subclass: uvicorn pickles its
    config into spawned worker processes, and this pickles by reference (each worker gets an
    admission count of its own)."""
    return functools.partial(BoundedHeadProtocol, limits=limits, admission=admission)


class _Refusal(Exception):
    """Raised in a parser callback, with the status, to stop httptools there (it reports it
    as the context of an HttpParserCallbackError)."""


class BoundedHeadProtocol(WriteDeadlineProtocol):
    """HttpToolsProtocol whose request heads have a deadline and a size limit, and whose
    answers have one to be read.

    - A head not complete `head_timeout` seconds after the server began waiting for it (the
      connection was made, or the previous response completed) closes the connection; bytes
      trickling in do not extend it. uvicorn's keep-alive timeout still closes idle ones.
    - A target over `max_target_bytes` is refused with 414; names + values of the headers over
      `max_header_bytes` with 431, as is a head still incomplete after `wire_budget` bytes, at
      which point the parser is fed no more.
    - A refusal is not written here: the app gets a bodiless request whose scope carries
      `extensions[REFUSAL]` (the status), the headers that fit, the first `max_target_bytes`
      of the target's path (else "/"), no query and the method if parsed (else GET). The
      connection closes after that answer, and nothing more is read from it.
    - Pipelined requests are parsed PARSE_SLICE bytes at a time, and no further while
      MAX_PIPELINED of them wait for their turn.
    - A client that takes nothing of its answers for `send_timeout` seconds while writing is
      paused (the transport's buffer over its high-water mark) has its connection aborted.
    """

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *,
                 limits: ConnectionLimits | None = None,
                 admission: Admission | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or ConnectionLimits()
        self.send_timeout = self.limits.send_timeout
        self.admission = admission
        self._budget = self.limits.wire_budget
        self.bytes_fed = 0  # to the parser, over the connection's life
        self._head_from = 0  # bytes_fed when the current head began (see on_message_complete)
        self._in_head = True  # False from a head's end to its message's end
        self.url: bytes | None = None  # None until a message begins (uvicorn's, from then on)
        self._last = False  # the connection's last answer is on its way: nothing more is read
        self._unfed = b""  # read but not parsed yet: MAX_PIPELINED requests were waiting
        # When the server began waiting for a head (None: not waiting). One timer per
        # connection checks it, re-armed only when it fires: a request costs no timer.
        self._waiting_since: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    # Connection and deadline
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        self._arm(self.limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # no parsed head queued: the server now waits for one
        HttpToolsProtocol.on_response_complete(self)
        if waiting and self._waiting_since is None:
            self._waiting_since = self.loop.time()
        if self._unfed and not self.transport.is_closing():
            self.data_received(b"")  # what was read but not yet parsed

    def _arm(self, delay: float) -> None:
        self._head_timer = self.loop.call_later(delay, self._check_deadline)

    def _check_deadline(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._waiting_since is None:
            self._arm(self.limits.head_timeout)
            return
        late = self.loop.time() - self._waiting_since
        if late >= self.limits.head_timeout:
            # The connection closes as an idle keep-alive one does.
            self.timeout_keep_alive_handler()
        else:
            self._arm(self.limits.head_timeout - late)

    # Feeding the parser: a slice at a time, and no further while MAX_PIPELINED requests wait
    # their turn (the rest of the read waits as bytes, `_unfed`, until one is answered).
    def data_received(self, data: bytes) -> None:
        if self._last:
            return  # its answer is on the way, then the connection closes
        self._unset_keepalive_if_required()
        view = memoryview(self._unfed + data if self._unfed else data)
        self._unfed = b""
        while view:
            if len(self.pipeline) >= MAX_PIPELINED:
                self._unfed = bytes(view)
                self.flow.pause_reading()  # until one is answered (on_response_complete)
                return
            size = PARSE_SLICE
            if self._in_head:  # within a head, no more than its budget has left
                size = min(size, self._budget - (self.bytes_fed - self._head_from))
            if not self._feed(view[:size]) or self._last:
                return
            view = view[size:]
            if self._in_head and self.bytes_fed - self._head_from >= self._budget:
                self._refuse(431)
                return

    def _feed(self, piece: bytes | memoryview) -> bool:
        """uvicorn's data_received, but for refusals, what does not parse and upgrades; False
        when the rest is not to be fed."""
        self.bytes_fed += len(piece)
        try:
            self.parser.feed_data(piece)
            return True
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Refusal):
                self._refuse(exc.__context__.args[0])
                return False
            self._unparsable()
        except httptools.HttpParserUpgrade:
            self._upgrade_declined()
        return False

    def _unparsable(self) -> None:
        """uvicorn's answer to what httptools cannot parse, but as problem+json with the edge's
        headers, and counted; logged at INFO, not as a warning: the error is the client's."""
        self.logger.info("Invalid HTTP request received.")
        metrics.child(metrics.REQUESTS, "malformed", "other", "400").inc()
        self._last = True
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            path = getattr(self, "scope", {}).get("path", "/")
            self.transport.write(unparsable(hsts=self.scheme == "https").render(
                path, keep_alive=False))
        self.transport.close()

    # Parser callbacks: the sizes are checked once the head is whole (the budget bounds what
    # it can hold meanwhile), so the common head costs no per-header callback of ours.
    def on_headers_complete(self) -> None:
        self._waiting_since = None
        status = self._oversize() or self._upgrade_with_body()
        if status is not None:
            raise _Refusal(status)
        self._in_head = False
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        # The next head starts here. What follows in this read goes uncounted: that is the
        # "plus one read chunk" of the budget.
        self._in_head, self.url, self._head_from = True, None, self.bytes_fed

    def _oversize(self) -> int | None:
        """414 for a target over its limit, 431 for headers over theirs (then only the headers
        that fit are kept), else None."""
        status = 414 if len(self.url) > self.limits.max_target_bytes else None
        total = 0
        for index, (name, value) in enumerate(self.headers):
            total += len(name) + len(value)
            if total > self.limits.max_header_bytes:
                del self.headers[index:]  # this header and any after it are dropped
                return status or 431
        return status

    # Upgrades: none is offered (no WebSocket, no h2c). A server may ignore Upgrade (RFC 9110
    # 7.8): the request is answered as the HTTP/1.1 request it also is. But httptools stops
    # where the upgraded protocol would begin and drops the rest of that read, and hands it
    # any body: so such a request is its connection's last, and one with a body is refused.
    def _should_upgrade_to_ws(self) -> bool:
        return False

    def _upgrade_declined(self) -> None:
        self._last = True
        if self.cycle is not None:
            self.cycle.keep_alive = False

    def _upgrade_with_body(self) -> int | None:
        """400 for a head asking for an upgrade that announces a body, else None."""
        if not self.parser.should_upgrade():
            return None
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length"
                                                and value.strip() != b"0"):
                return 400
        return None

    # Refusal
    def _refuse(self, status: int) -> None:
        """Starts (or queues behind the request in progress) a bodiless request marked with
        `status` for the app to answer, after which the connection closes."""
        if self.url is None:  # only empty lines came: nothing of a head was parsed
            self.on_message_begin()
        status = self._oversize() or status
        self._last, self._waiting_since = True, None
        cycle = RequestResponseCycle(
            scope=self._refused_scope(status), transport=self.transport, flow=self.flow,
            logger=self.logger, access_logger=self.access_logger, access_log=self.access_log,
            default_headers=self.server_state.default_headers, message_event=asyncio.Event(),
            expect_100_continue=False, keep_alive=False, on_response=self.on_response_complete)
        cycle.more_body = False  # the app's first receive is the final, empty one
        cycle.message_event.set()
        existing, self.cycle = self.cycle, cycle
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)
        else:  # pipelined behind a request in progress, as uvicorn queues one
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))

    def _refused_scope(self, status: int) -> Any:
        scope = self.scope  # its headers are those that fit
        scope["method"] = self.parser.get_method().decode("ascii") if self.url else "GET"
        if self.parser.get_http_version() == "1.0":
            scope["http_version"] = "1.0"
        try:
            raw_path = httptools.parse_url(self.url[:self.limits.max_target_bytes]).path or b"/"
        except httptools.HttpParserInvalidURLError:
            raw_path = b"/"
        path = raw_path.decode("latin-1")
        path = urllib.parse.unquote(path) if "%" in path else path
        scope["path"] = self.root_path + path  # as uvicorn does
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = b""
        scope["extensions"] = {**scope.get("extensions", {}), REFUSAL: status}
        return scope
