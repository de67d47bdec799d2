"""Load shedding: how many requests one gateway process serves at once, and the answer beyond.

Past `limit` requests in flight, a request is answered 503 with `Retry-After` at once, by the
server protocol itself (gateway/edge/protocol.py): no task, no Redis, no upstream. A client that
does not wait before asking again (many do not) would otherwise keep the process busy shedding,
starving the requests it admitted: so the connection that got the 503 is not read again for
`pause` seconds (Retry-After's: a client that heeds it never notices). Its next request is then
answered like any other. Probes and scrapes are never shed: an overloaded
gateway must still say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import metrics
from gateway.edge.canned import CannedAnswer
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
