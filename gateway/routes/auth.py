"""/auth/login: email and password for a bearer token, from the User service; /auth/logout ends
the token it carries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, StringConstraints

from gateway.routes.dispatch import Dispatcher
from gateway.routes.schemas import STRICT, add
from gateway.routes.table import Access, Route
from portico.user.v1 import user_pb2 as pb
from portico.user.v1 import user_pb2_grpc as grpc_pb

LOGIN = Route("POST", "/auth/login", "user", grpc_pb.UserServiceStub, "Login",
              pb.LoginRequest, Access.PUBLIC, idempotent=True, rate="login")
LOGOUT = Route("POST", "/auth/logout", "user", grpc_pb.UserServiceStub, "Logout",
               pb.LogoutRequest, Access.SIGNED_IN, idempotent=True, status=204)
ROUTES = (LOGIN, LOGOUT)


class Credentials(BaseModel):
    """An email and password."""

    model_config = STRICT | {"json_schema_extra": {"examples": [
        {"email": "jane@example.com", "password": "correct-horse-42"}]}}
    email: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Token(BaseModel):
    """An OAuth 2.0 style bearer token."""

    model_config = {"json_schema_extra": {"examples": [
        {"access_token": "eyJhbGciOiJFZERTQSJ9...", "token_type": "Bearer",
         "expires_in": 3600}]}}
    access_token: str
    token_type: str
    expires_in: int


def router(dispatch: Dispatcher) -> APIRouter:
    api = APIRouter(tags=["auth"])

    async def login(request: Request, body: Annotated[Credentials, Body()]):
        return await dispatch.respond(LOGIN, request, body.model_dump())

    async def logout(request: Request):
        return await dispatch.respond(LOGOUT, request, {})

    add(api, LOGIN, login, response_model=Token, summary="Sign in", extra_errors=(401,))
    add(api, LOGOUT, logout, summary="Sign out: the token it carries stops working",
        extra_errors=(401,))
    return api
