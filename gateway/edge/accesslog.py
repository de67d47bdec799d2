"""One access log line and the request metrics per request, by route template (never by the
path a client wrote: labels stay few, and a log line holds at most the first 256 characters of a
path)."""

from __future__ import annotations

import logging

from gateway import metrics

log = logging.getLogger("portico.access")

MAX_LOGGED_PATH = 256
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Probes and scrapes come every few seconds from machines: at INFO they would drown the lines
# of the requests people make. They log at DEBUG (PORTICO_LOG_LEVEL=DEBUG shows them).
ROUTINE = frozenset({"/healthz", "/readyz", "/metrics"})


class AccessLog:
    """Records a finished request: metrics always, a log line when `enabled`."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def record(self, *, method: str, path: str, label: str, status: int, elapsed: float,
               sent: int, client: str | None, exemplar: dict[str, str] | None = None) -> None:
        """`exemplar`: the request's trace id, when its trace is recorded: the latency
        histogram's bucket keeps it (OpenMetrics exposition only; see metrics.render)."""
        method_label = method if method in _METHODS else "other"
        metrics.child(metrics.REQUESTS, label, method_label, str(status)).inc()
        metrics.child(metrics.LATENCY, label, method_label).observe(elapsed, exemplar)
        level = logging.DEBUG if label in ROUTINE else logging.INFO
        if self.enabled and log.isEnabledFor(level):
            log.log(level, "request", extra={
                "method": method_label, "path": path[:MAX_LOGGED_PATH], "route": label,
                "status": status, "duration_ms": round(elapsed * 1000, 2), "bytes": sent,
                "client": client,
            })
