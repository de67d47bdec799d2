"""JSON access log lines and the request metrics (by route template, method and status)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics

log = logging.getLogger("portico.access")


class RouteLabels:
    """Maps a path to its route template, so metric labels stay few ("other" for the rest)."""

    def __init__(self, templates: Iterable[str], *, remember: int = 10_000) -> None:
        self._seen: dict[str, str] = {}
        self._remember = remember
        self._patterns = [
            (re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", t.rstrip("/")) + "/?$"), t)
            for t in sorted(set(templates), key=lambda t: (t.count("{"), -len(t)))
        ]

    def __call__(self, path: str) -> str:
        label = self._seen.get(path)
        if label is None:
            label = next((t for p, t in self._patterns if p.match(path)), "other")
            if len(self._seen) >= self._remember:
                self._seen.clear()
            self._seen[path] = label
        return label


class AccessMiddleware:
    """Times each request; logs one line and records the metrics when the response is done."""

    def __init__(self, app: ASGIApp, *, labels: RouteLabels, log_requests: bool = True) -> None:
        self.app = app
        self.labels = labels
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0

        async def observe(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            elapsed = time.perf_counter() - started
            route, method = self.labels(scope["path"]), scope["method"]
            metrics.child(metrics.REQUESTS, route, method, str(status)).inc()
            metrics.child(metrics.LATENCY, route, method).observe(elapsed)
            if self.log_requests:
                client = scope.get("client")
                log.info("request", extra={
                    "method": method, "path": scope["path"], "route": route,
                    "status": status, "duration_ms": round(elapsed * 1000, 2), "bytes": sent,
                    "client": client[0] if client else None,
                })
