"""/users and the User service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, StringConstraints

from gateway.routes.dispatch import Dispatcher
from gateway.routes.schemas import STRICT, Cursor, Limit, Name, PathId, add, by_id, without_none
from gateway.routes.table import Access, AdminOnly, Route
from portico.user.v1 import user_pb2 as pb
from portico.user.v1 import user_pb2_grpc as grpc_pb

Email = Annotated[str, StringConstraints(
    strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Role = Literal["customer", "admin"]

Stub = grpc_pb.UserServiceStub
ROLE_IS_ADMINS = AdminOnly("role", "only an admin may choose a role")
CREATE = Route("POST", "/users", "user", Stub, "CreateUser", pb.CreateUserRequest,
               Access.PUBLIC, status=201, response_field="user", location="/users/{id}",
               rate="signup", admin_only=(ROLE_IS_ADMINS,))
GET = Route("GET", "/users/{id}", "user", Stub, "GetUser", pb.GetUserRequest,
            Access.SELF_OR_ADMIN, idempotent=True, read=True, response_field="user",
            owner_field="id")
UPDATE = Route("PUT", "/users/{id}", "user", Stub, "UpdateUser", pb.UpdateUserRequest,
               Access.SELF_OR_ADMIN, idempotent=True, response_field="user", owner_field="id",
               admin_only=(ROLE_IS_ADMINS,))
DELETE = Route("DELETE", "/users/{id}", "user", Stub, "DeleteUser", pb.DeleteUserRequest,
               Access.SELF_OR_ADMIN, idempotent=True, status=204, owner_field="id")
LIST = Route("GET", "/users", "user", Stub, "ListUsers", pb.ListUsersRequest, Access.ADMIN,
             idempotent=True, read=True, list_field="users")
ROUTES = (CREATE, GET, UPDATE, DELETE, LIST)


class UserCreate(BaseModel):
    """Sign-up. Only an admin may give a role."""

    model_config = STRICT | {"json_schema_extra": {"examples": [
        {"name": "Jane Smith", "email": "jane@example.com", "password": "correct-horse-42"}]}}
    name: Name
    email: Email
    password: Password
    role: Role | None = None


class UserUpdate(BaseModel):
    """Replaces name and email; the password and role only when given (role: admins only).
    Changing your own password or email needs `current_password`."""

    model_config = STRICT | {"json_schema_extra": {"examples": [
        {"name": "Jane Doe", "email": "jane@example.com"}]}}
    name: Name
    email: Email
    password: Password | None = None
    role: Role | None = None
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None \
        = None


class User(BaseModel):
    """A user as the API shows it: never a password or a hash."""

    model_config = {"json_schema_extra": {"examples": [
        {"id": "12345", "name": "John Doe", "email": "john@example.com", "role": "customer",
         "create_time": "2026-11-29T10:00:00Z", "update_time": "2026-11-29T10:00:00Z"}]}}
    id: str
    name: str
    email: str
    role: Role
    create_time: datetime
    update_time: datetime


def router(dispatch: Dispatcher) -> APIRouter:
    api = APIRouter(tags=["users"])

    async def create_user(request: Request, body: Annotated[UserCreate, Body()]):
        return await dispatch.respond(CREATE, request, without_none(body))

    async def update_user(request: Request, id: PathId, body: Annotated[UserUpdate, Body()]):
        return await dispatch.respond(UPDATE, request, {**without_none(body), "id": id})

    async def delete_user(request: Request, id: PathId):
        return await dispatch.respond(DELETE, request, {"id": id})

    async def list_users(request: Request, limit: Limit = 20, cursor: Cursor = None):
        return await dispatch.respond(LIST, request,
                                      {"page_size": limit, "page_token": cursor or ""})

    add(api, CREATE, create_user, response_model=User, summary="Sign up",
        extra_errors=(403, 409))
    add(api, GET, by_id(dispatch, GET), response_model=User, summary="Get a user by id",
        extra_errors=(401, 403, 404))
    add(api, UPDATE, update_user, response_model=User, summary="Update a user",
        extra_errors=(401, 403, 404, 409))
    add(api, DELETE, delete_user, summary="Delete a user", extra_errors=(401, 403, 404))
    add(api, LIST, list_users, response_model=list[User], summary="List users (admins)",
        extra_errors=(401, 403))
    return api


__all__ = ["ROUTES", "router"]
