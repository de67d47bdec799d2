"""The ASGI app the server runs: FastAPI, entered through the edge pipeline.

Every HTTP request goes into the pipeline first (behind CORS, when it is on), and only what the
pipeline hands on enters FastAPI's own stack (its error handlers and router). An answer the
pipeline makes itself (a refusal, a cache hit, a GET by id) so costs no pass through FastAPI's
middleware. Lifespan events go to FastAPI as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.edge.pipeline import EdgeConfig, EdgePipeline


class EdgeApp(FastAPI):
    """FastAPI behind the edge pipeline configured by `edge`, inside the `outer` middleware.
    The pipeline is built by the first request, so `edge` may be changed until then."""

    def __init__(self, *, edge: EdgeConfig, outer: Sequence[Middleware] = (),
                 **options: Any) -> None:
        super().__init__(**options)
        self.edge = edge
        self._outer = list(outer)
        self._front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await FastAPI.__call__(self, scope, receive, send)
            return
        if self._front is None:
            self._front = self._build_front()
        await self._front(scope, receive, send)

    def _build_front(self) -> ASGIApp:
        app: ASGIApp = EdgePipeline(self._fastapi, config=self.edge)
        for middleware in reversed(self._outer):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return app

    async def _fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(self, scope, receive, send)
