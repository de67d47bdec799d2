"""Types shared by the resource modules: strict request models, documented errors, paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.routes.table import Route

# Strict: a JSON string is never coerced to a number nor a number to a string, and an unknown
# field is an error, so `{"$gt": ""}` where a string belongs is refused at the edge.
STRICT = ConfigDict(extra="forbid", strict=True)

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Money = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"),
                  Field(examples=["19.99"], description="exact decimal, at most two places")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
PathId = Annotated[str, Path(pattern=ID_PATTERN, description="the id")]
Limit = Annotated[int, Query(ge=1, le=100, description="largest number of items to return")]
Cursor = Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_=-]+$",
                                     description="the cursor of the previous page's Link")]


class ProblemModel(BaseModel):
    """RFC 9457 problem details, as every error of the gateway is answered."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    code: str | None = None
    errors: list[dict[str, str]] | None = None


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error answers a route can give. Any route answers 401 to a
    token that is bad or revoked (public routes too: a token sent is checked)."""
    common = (400, 401, 408, 413, 414, 415, 429, 431, 500, 503, 504)
    return {
        status: {"model": ProblemModel, "description": "problem details",
                 "content": {"application/problem+json": {}}}
        for status in sorted(set(statuses) | set(common))
    }


def add(router: APIRouter, route: Route, endpoint: Callable[..., Any], *,
        response_model: Any = None, summary: str, extra_errors: tuple[int, ...] = ()) -> None:
    """Registers `endpoint` for the route's path (the edge takes a trailing slash off every
    request path before routing, so each route is registered and matched once)."""
    router.add_api_route(
        route.path, endpoint, methods=[route.verb], status_code=route.status,
        response_model=response_model if route.status != 204 else None,
        responses=errors(*extra_errors), summary=summary, name=route.method,
        response_class=Response if route.status == 204 else JSONResponse,
        description=f"Who may call it: {route.access.value}. gRPC: {route.grpc_method}.")


def by_id(dispatch: Any, route: Route) -> Callable[..., Any]:
    """The endpoint of a GET by the id in its path. The edge serves such GETs itself when the
    id fits (gateway/edge/pipeline.py); FastAPI answers the rest (a bad id's 400, HEAD) and
    documents the route."""

    async def get_one(request: Request, id: PathId) -> Response:
        return await dispatch.respond(route, request, {"id": id})

    return get_one


def without_none(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_none=True)

