"""GETs of one resource by the id in its path, served straight from the route table.

FastAPI's routing and parameter machinery (matching every route, solving dependencies, a
sub-response per request) is about a tenth of the CPU of a cache miss, and such a GET needs
none of it: its one input is the id, checked here against the pattern FastAPI checks, access is
decided by the same `require`, and the same dispatcher makes the call. FastAPI still serves
everything else about these routes, so it answers as documented: an id that does not fit (the
400 with its field error), HEAD, and the docs. Its endpoints for them are made by `endpoint`
from the same function, so both entrances serve alike.

Only routes whose access needs nothing but the principal and the path id qualify (anyone, or
the user themself or an admin); orders, scoped by the order service, keep their own endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import Problem, request_problem
from gateway.routes.dispatch import Dispatcher, require
from gateway.routes.schemas import ID_PATTERN, PathId
from gateway.routes.table import Access, Route

_ID = ID_PATTERN.removeprefix("^").removesuffix("$")


def qualifies(route: Route) -> bool:
    return (route.verb == "GET" and route.path.endswith("/{id}") and route.path.count("{") == 1
            and route.access in (Access.PUBLIC, Access.SELF_OR_ADMIN))


async def get_by_id(dispatch: Dispatcher, route: Route, request: Request, id: str) -> Response:
    require(route, request, owner=id)
    return await dispatch(route, request, {"id": id})


def endpoint(dispatch: Dispatcher, route: Route):
    """The FastAPI endpoint of a qualifying route."""
    if not qualifies(route):
        raise ValueError(f"{route.verb} {route.path} is not a GET by id")

    async def get_one(request: Request, id: PathId) -> Response:
        return await get_by_id(dispatch, route, request, id)

    return get_one


class DirectRoutes:
    """The innermost middleware: answers the qualifying `routes` when the id fits, and hands
    every other request to the app."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[Route], dispatch: Dispatcher) -> None:
        self.app = app
        self._dispatch = dispatch
        self._routes = [
            (re.compile("^" + re.escape(route.path[:-len("{id}")]) + f"(?P<id>{_ID})$"), route)
            for route in routes if qualifies(route)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Behind a root path FastAPI matches on the path without it: left to FastAPI.
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            path = scope["path"]
            for pattern, route in self._routes:
                found = pattern.match(path)
                if found is not None:
                    await self._serve(route, found["id"], scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, route: Route, id: str, scope: Scope, receive: Receive,
                     send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await get_by_id(self._dispatch, route, request, id)
        except Problem as problem:  # as FastAPI's exception handler answers it
            response = request_problem(request, problem)
        await response(scope, receive, send)
