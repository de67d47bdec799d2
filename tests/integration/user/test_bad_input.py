"""Every kind of bad input is INVALID_ARGUMENT naming each bad field at once, over real gRPC."""

from __future__ import annotations

import grpc
import pytest

from portico.user.v1 import user_pb2 as pb
from portico.user.v1.user_pb2_grpc import UserServiceStub

from .support import details

GOOD = {"name": "Ann", "email": "ann@example.com", "password": "long enough"}
LONG_EMAIL = "a" * 64 + "@" + "b" * 186 + ".com"  # 255 characters


async def _violations(call) -> set[str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    found = details(caught.value)["violations"]
    assert all(found.values())  # each field says what is wrong with it
    return set(found)


@pytest.mark.parametrize(("fields", "bad"), [
    ({"name": "", "email": "", "password": ""}, {"name", "email", "password"}),
    ({"name": "   "}, {"name"}),
    ({"name": "x" * 201}, {"name"}),
    ({"name": "tab\tinside"}, {"name"}),
    ({"name": "nul\x00inside"}, {"name"}),
    ({"email": "no-at-sign.example.com"}, {"email"}),
    ({"email": "two@@example.com"}, {"email"}),
    ({"email": "a@b@example.com"}, {"email"}),
    ({"email": "@example.com"}, {"email"}),
    ({"email": "ann@localhost"}, {"email"}),
    ({"email": "ann@.example.com"}, {"email"}),
    ({"email": "ann@example."}, {"email"}),
    ({"email": "ann smith@example.com"}, {"email"}),
    ({"email": " ann@example.com"}, {"email"}),
    ({"email": "x" * 65 + "@example.com"}, {"email"}),
    ({"email": LONG_EMAIL}, {"email"}),
    ({"password": "short77"}, {"password"}),
    ({"password": "p" * 257}, {"password"}),
    ({"role": "root"}, {"role"}),
    ({"role": "Admin"}, {"role"}),
    ({"name": "", "email": "bad", "password": "x", "role": "x"},
     {"name", "email", "password", "role"}),
])
async def test_create_user(stub: UserServiceStub, fields: dict, bad: set[str]) -> None:
    request = pb.CreateUserRequest(**(GOOD | fields))
    assert await _violations(stub.CreateUser(request)) == bad


@pytest.mark.parametrize("user_id", ["", "x" * 65])
async def test_get_and_delete_user_ids(stub: UserServiceStub, user_id: str) -> None:
    assert await _violations(stub.GetUser(pb.GetUserRequest(id=user_id))) == {"id"}
    assert await _violations(stub.DeleteUser(pb.DeleteUserRequest(id=user_id))) == {"id"}


@pytest.mark.parametrize(("fields", "bad"), [
    ({"id": "", "name": "", "email": "bad", "password": "short", "role": "x"},
     {"id", "name", "email", "password", "role"}),
    ({"id": "some-id", "name": "Ann"}, {"email"}),  # PUT replaces: the email is required
    ({"id": "some-id", "email": "ann@example.com"}, {"name"}),
    ({"id": "some-id", "name": "Ann", "email": "ann@example.com", "password": ""}, {"password"}),
    ({"id": "some-id", "name": "Ann", "email": "ann@example.com", "role": "owner"}, {"role"}),
])
async def test_update_user(stub: UserServiceStub, fields: dict, bad: set[str]) -> None:
    assert await _violations(stub.UpdateUser(pb.UpdateUserRequest(**fields))) == bad


@pytest.mark.parametrize(("page_size", "page_token", "bad"), [
    (-1, "", {"page_size"}),
    (101, "", {"page_size"}),
    (10, "definitely-not-a-token", {"page_token"}),
    (1000, "%%%", {"page_size", "page_token"}),
])
async def test_list_users(stub: UserServiceStub, page_size: int, page_token: str,
                          bad: set[str]) -> None:
    request = pb.ListUsersRequest(page_size=page_size, page_token=page_token)
    assert await _violations(stub.ListUsers(request)) == bad


@pytest.mark.parametrize(("fields", "bad"), [
    ({"email": "", "password": ""}, {"email", "password"}),
    ({"email": "not-an-email", "password": "whatever1"}, {"email"}),
    ({"email": "ann@example.com", "password": "p" * 257}, {"password"}),
])
async def test_login(stub: UserServiceStub, fields: dict, bad: set[str]) -> None:
    assert await _violations(stub.Login(pb.LoginRequest(**fields))) == bad
