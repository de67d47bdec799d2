"""Load shedding: how many requests one gateway process serves at once, and the answer beyond.

Past `limit` requests in flight, a request is answered 503 with `Retry-After` at once, by the
server protocol itself (AdmittingProtocol, which gateway/edge/protocol.py builds on): no task,
no Redis, no upstream. A client that does not wait before asking again (many do not) would
otherwise keep the process busy shedding, starving the requests it admitted: so the connection
that got the 503 is not read again for `pause` seconds (Retry-After's: a client that heeds it
never notices). Its next request is then answered like any other. Probes and scrapes are
never shed: an overloaded gateway must still say so (and /metrics answers scrapers inside the
deployment only: gateway/routes/ops.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway import metrics
from gateway.edge.canned import CannedAnswer
from gateway.edge.onewrite import OneWriteCycle
from gateway.errors import Problem

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass
class Admission:
    """The in-flight count of one process against its `limit` (each process has its own)."""

    limit: int
    retry_after: int = 1
    pause: float = 1.0
    in_flight: int = 0
    hsts: bool = False

    def __post_init__(self) -> None:
        if self.limit < 1 or self.retry_after < 1 or not 0 <= self.pause <= self.retry_after:
            raise ValueError("limit and retry_after must be at least 1, pause within 0 and "
                             "retry_after")
        self._answer = CannedAnswer(
            Problem(503, "the gateway is at capacity; try again shortly", code="OVERLOADED",
                    headers={"Retry-After": str(self.retry_after)}), hsts=self.hsts)

    def admits(self, path: str) -> bool:
        return self.in_flight < self.limit or path in EXEMPT

    def answer(self, path: str, *, keep_alive: bool) -> bytes:
        """The whole HTTP/1.1 answer of a shed request, as the pipeline would write it."""
        metrics.child(metrics.REQUESTS, "shed", "other", "503").inc()
        return self._answer.render(path, keep_alive=keep_alive)


class AdmittingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, admitting each request against `admission` (None: every
    one) and answering it through a OneWriteCycle. gateway/edge/protocol.py builds on it."""

    admission: Admission | None = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # uvicorn made the cycle; from here on it writes a whole answer at once.
        cycle.__class__ = OneWriteCycle
        admission = self.admission
        if admission is None:
            HttpToolsProtocol._start_asgi_task(self, cycle, app)
            return
        if not admission.admits(cycle.scope["path"]):
            self._shed(cycle)
            return
        admission.in_flight += 1
        # uvicorn's own, but for the count (its reset_contextvars option is not used here).
        task = self.loop.create_task(self._counted(cycle, app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _counted(self, cycle: RequestResponseCycle, app: Any) -> None:
        # Counted down as the handler returns, not in a done callback: uvloop reads the data
        # that came meanwhile before it runs the callbacks of tasks that just ended, so the next
        # requests of clients already answered would find them still counted, and be shed.
        # (A task cancelled before it ever ran is not counted down: only uvicorn's shutdown
        # cancels these tasks, and then the count no longer matters.)
        try:
            await cycle.run_asgi(app)
        finally:
            self.admission.in_flight -= 1

    def _shed(self, cycle: RequestResponseCycle) -> None:
        """Answers 503 at once; the connection is not read again for a short pause."""
        cycle.response_complete = True  # the parser now drops whatever body follows
        self.transport.write(self.admission.answer(cycle.scope["path"],
                                                   keep_alive=cycle.keep_alive))
        if not cycle.keep_alive:
            self.transport.close()
            return
        self.on_response_complete()
        if not self.transport.is_closing():
            self.flow.pause_reading()
            self.loop.call_later(self.admission.pause, self._read_again)

    def _read_again(self) -> None:
        if not self.transport.is_closing():
            self.flow.resume_reading()
