"""A request's route, resolved once: exact paths by one dict lookup, paths ending in an id by a
second one on the path's parent, the docs' assets by prefix. Nothing about a path that matched
no route is remembered, so any number of distinct paths costs no memory.

The table also knows each route's query parameters (names and types, taken from its FastAPI
endpoint), so the edge refuses unknown or repeated ones and builds cache keys from canonical
values only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from gateway.routes.table import Route

ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A query string has a few parameters at most; more is refused before anything reads them.
MAX_QUERY_FIELDS = 16
QueryTypes = dict[str, type]


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass(slots=True)
class Match:
    """The route of a request (None: no route for this method), its metrics label (the path
    template, or "other"), and its path parameters."""

    route: Route | None
    label: str
    params: dict[str, str]


NO_MATCH = Match(None, "other", {})


class QueryError(ValueError):
    """A query string the route does not take (its message says why)."""


class RouteTable:
    """Every route of the gateway, by verb and path template (templates end in at most one
    `{id}`), plus routes that cover every path under them (`prefixes`)."""

    def __init__(self, routes: Iterable[Route], *, prefixes: Iterable[Route] = ()) -> None:
        self._exact: dict[tuple[str, str], Route] = {}
        self._by_id: dict[tuple[str, str], Route] = {}
        self._labels: dict[str, str] = {}       # exact paths and id parents -> template
        self._prefixes = [(route.path.rstrip("/") + "/", route) for route in prefixes]
        self._query: dict[Route, QueryTypes] = {}
        for route in routes:
            if route.path.endswith("/{id}"):
                parent = route.path[:-len("/{id}")]
                self._by_id[(route.verb, parent)] = route
                self._labels["id:" + parent] = route.path
            elif "{" in route.path:
                raise ValueError(f"{route.path}: only a trailing {{id}} is supported")
            else:
                self._exact[(route.verb, route.path)] = route
                self._labels[route.path] = route.path

    def resolve(self, method: str, path: str) -> Match:
        """The match of a request (HEAD resolves as GET); `path` has no trailing slash."""
        verb = "GET" if method == "HEAD" else method
        route = self._exact.get((verb, path))
        if route is not None:
            return Match(route, route.path, {})
        label = self._labels.get(path)
        if label is not None:  # a known path, another method: FastAPI answers 405
            return Match(None, label, {})
        parent, _, last = path.rpartition("/")
        if last and parent:
            route = self._by_id.get((verb, parent))
            if route is not None:
                return Match(route, route.path, {"id": last})
            label = self._labels.get("id:" + parent)
            if label is not None:
                return Match(None, label, {})
        for prefix, route in self._prefixes:
            if path.startswith(prefix):
                return Match(route if verb == route.verb else None, route.path, {})
        return NO_MATCH

    def take_query(self, route: Route, names: QueryTypes) -> None:
        """Declares the query parameters of `route` (by its FastAPI endpoint)."""
        self._query[route] = dict(names)

    def query(self, route: Route, query_string: bytes) -> list[tuple[str, str]]:
        """The route's query parameters, canonical (integers without leading zeros or signs);
        raises QueryError for a parameter the route does not take, one given twice, or more
        than MAX_QUERY_FIELDS."""
        if not query_string:
            return []
        try:
            pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True,
                              max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            raise QueryError(f"at most {MAX_QUERY_FIELDS} query parameters") from None
        types = self._query.get(route, {})
        seen: set[str] = set()
        canonical = []
        for name, value in pairs:
            kind = types.get(name)
            if kind is None:
                raise QueryError(f"unknown query parameter {name[:64]!r}"
                                 + (f"; this route takes {', '.join(sorted(types))}"
                                    if types else "; this route takes none"))
            if name in seen:
                raise QueryError(f"query parameter {name!r} given more than once")
            seen.add(name)
            if kind is int and value.isdigit() and len(value) <= 18:
                value = str(int(value))
            canonical.append((name, value))
        return canonical

    def routes(self) -> list[Route]:
        return [*self._exact.values(), *self._by_id.values()]
