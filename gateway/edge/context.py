"""What the edge pipeline learned about a request, handed to whatever answers it (the dispatcher
directly, or FastAPI's endpoints through the request's state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import Receive

from gateway.policies.auth import Principal
from gateway.routes.table import Route

STATE_KEY = "edge"


@dataclass(slots=True)
class EdgeContext:
    """One request, parsed once: its id, route (None when no route matched), path parameters,
    caller and validated query, and the server's `receive` (to see the client leave)."""

    request_id: str
    path: str
    route: Route | None = None
    params: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    principal: Principal | None = None
    receive: Receive | None = None


def context_of(request: Request) -> EdgeContext:
    """The context the pipeline left for a FastAPI endpoint."""
    return request.scope["state"][STATE_KEY]
