"""The server protocol's bound on a client that stops reading its answers (gateway/edge/protocol.py
builds on it).

While the transport's buffer is over its high-water mark, uvicorn pauses writing, and an answer
waiting to be written waits until the client reads: for good, with its request counted in
flight, if the client never does (uvicorn has no send timeout). So while writing is paused the
client must take some of what waits for it every `send_timeout` seconds, or the connection is
aborted. What it has taken is counted from the transport's buffer and the kernel's send queue
(which holds megabytes, so a reader's progress shows there first): a slow reader is not cut
off.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sys
import termios

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.edge.admission import AdmittingProtocol


class WriteDeadlineProtocol(AdmittingProtocol):
    """AdmittingProtocol that aborts a connection whose client takes nothing of its answers for
    `send_timeout` seconds while writing is paused."""

    send_timeout: float = 10.0
    _send_timer: asyncio.TimerHandle | None = None  # armed while writing is paused

    def connection_lost(self, exc: Exception | None) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        HttpToolsProtocol.pause_writing(self)
        if self._send_timer is None:
            self._await_reading(self._unread())

    def resume_writing(self) -> None:
        HttpToolsProtocol.resume_writing(self)
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _await_reading(self, unread: int) -> None:
        self._send_timer = self.loop.call_later(self.send_timeout, self._check_reading, unread)

    def _check_reading(self, unread_then: int) -> None:
        unread = self._unread()
        if unread < unread_then:
            self._await_reading(unread)
        else:
            self._send_timer = None
            self.transport.abort()

    def _unread(self) -> int:
        """Bytes written that the client has not taken yet."""
        unread = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                unread += int.from_bytes(queued, sys.byteorder, signed=True)
        return unread
