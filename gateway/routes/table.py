"""A route is data: the REST verb and path, the gRPC method behind it, who may call it, and
whether it may be repeated. One generic dispatcher serves every route."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from google.protobuf.message import Message


class Access(enum.Enum):
    """Who may call a route (the README's REST table)."""

    PUBLIC = "anyone"
    SIGNED_IN = "a signed-in user"
    ADMIN = "an admin"
    SELF_OR_ADMIN = "the user, or an admin"
    OWNER_OR_ADMIN = "the owner, or an admin"


@dataclass(frozen=True)
class Route:
    """One REST operation and the gRPC call that serves it."""

    verb: str
    path: str
    service: str                 # the upstream pool: "user", "product" or "order"
    stub: type
    method: str
    request: type[Message]
    access: Access
    idempotent: bool             # safe to repeat on UNAVAILABLE
    read: bool = False           # also safe to repeat after a try's own deadline
    status: int = 200
    response_field: str | None = None   # the response message field that is the body
    list_field: str | None = None       # a repeated field answered as a JSON array, paged
    location: str | None = None         # Location of a created resource, e.g. "/users/{id}"

    @property
    def grpc_method(self) -> str:
        return f"{self.request.DESCRIPTOR.file.package}.{self.stub.__name__[:-4]}/{self.method}"
