"""A route is data: the REST verb and path, the gRPC method behind it, and everything the edge
decides about it (who may call it, its rate policy, its cache rule, whether it may be repeated).
One generic dispatcher serves every route; the edge pipeline resolves a request's route once."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import Message

from gateway.policies.cache_entry import CacheRule


class Access(enum.Enum):
    """Who may call a route (the README's REST table)."""

    PUBLIC = "anyone"
    SIGNED_IN = "a signed-in user"
    ADMIN = "an admin"
    SELF_OR_ADMIN = "the user, or an admin"
    OWNER_OR_ADMIN = "the owner, or an admin"


@dataclass(frozen=True)
class AdminOnly:
    """A request field only an admin may set (to any value, or to one of `values`)."""

    field: str
    why: str
    values: frozenset[str] | None = None

    def claimed_by(self, fields: dict) -> bool:
        value = fields.get(self.field)
        if value is None or value == "":
            return False
        return self.values is None or value in self.values


@dataclass(frozen=True)
class Route:
    """One REST operation: the gRPC call that serves it (none for what the gateway answers
    itself, such as health and docs) and the edge's rules for it."""

    verb: str
    path: str
    service: str | None = None          # the upstream pool: "user", "product" or "order"
    stub: type | None = None
    method: str | None = None
    request: type[Message] | None = None
    access: Access = Access.PUBLIC
    idempotent: bool = False            # safe to repeat on UNAVAILABLE
    read: bool = False                  # also safe to repeat after a try's own deadline
    status: int = 200
    response_field: str | None = None   # the response message field that is the body
    list_field: str | None = None       # a repeated field answered as a JSON array, paged
    location: str | None = None         # Location of a created resource, e.g. "/users/{id}"
    rate: str | None = "default"        # the rate policy; None: never limited (health)
    cache: CacheRule | None = None      # public GETs only: cached in the shared cache
    owner_field: str | None = None      # SELF_OR_ADMIN: the field naming the user acted on
    customer_field: str | None = None   # the field scoping the call to the caller
    customer_is_caller: bool = False    # ... even for an admin (a new order is the caller's)
    admin_only: tuple[AdminOnly, ...] = ()
    docs: bool = False                  # an HTML page of the docs (its own CSP)

    @property
    def grpc_method(self) -> str:
        if self.request is None or self.stub is None:
            return ""
        return f"{self.request.DESCRIPTOR.file.package}.{self.stub.__name__[:-4]}/{self.method}"

    @property
    def direct(self) -> bool:
        """A GET whose one input is the id in its path: served without FastAPI's routing."""
        return (self.verb == "GET" and self.service is not None
                and self.path.endswith("/{id}") and self.path.count("{") == 1)


def own(verb: str, path: str, *, rate: str | None = None, access: Access = Access.PUBLIC,
        docs: bool = False) -> Route:
    """A route the gateway answers itself (health, metrics, docs, admin views)."""
    return Route(verb, path, access=access, rate=rate, docs=docs)
