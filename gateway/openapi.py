"""The served OpenAPI document: FastAPI's, with errors documented as problem+json (400 for bad
input, as the status table has it, instead of FastAPI's default 422)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

DESCRIPTION = """REST/JSON edge of the Portico storefront services.

Sign in with `POST /auth/login`, then send `Authorization: Bearer <access_token>`.
Errors are RFC 9457 problem details (`application/problem+json`). Money is an exact decimal
string with two places, such as `"19.99"`. Lists are paged with `limit` and the `cursor` of
the `Link: <...>; rel="next"` header.
"""


def install(app: FastAPI, *, version: str) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title="Portico", version=version, description=DESCRIPTION,
                                 routes=app.routes)
            app.openapi_schema = _problems_only(schema)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _problems_only(schema: dict[str, Any]) -> dict[str, Any]:
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            responses = operation.get("responses", {})
            responses.pop("422", None)
            for status, response in responses.items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content["application/problem+json"] = content.pop("application/json")
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    schema["security"] = [{}, {"bearer": []}]
    return schema
