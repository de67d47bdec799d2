"""UserService over a real gRPC channel to a server made by `start`, on a real database."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.protobuf.message import Message

from portico.user.v1 import user_pb2 as pb
from portico.user.v1.user_pb2_grpc import UserServiceStub

from .support import details

PASSWORD = "correct horse battery"


def _email(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


async def _create(stub: UserServiceStub, email: str | None = None, **fields) -> pb.User:
    values = {"name": "Ann Example", "email": email or _email(), "password": PASSWORD} | fields
    request = pb.CreateUserRequest(**values)
    response = await stub.CreateUser(request)
    _assert_no_secret(response)
    return response.user


def _assert_no_secret(response: Message) -> None:
    wire = response.SerializeToString()
    assert b"$argon2" not in wire and PASSWORD.encode() not in wire


async def _fails(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    assert b"$argon2" not in (caught.value.details() or "").encode()
    return caught.value


def test_the_user_message_has_no_field_for_a_secret() -> None:
    assert {f.name for f in pb.User.DESCRIPTOR.fields} == {
        "id", "name", "email", "role", "create_time", "update_time"}


async def test_create_then_get(stub: UserServiceStub) -> None:
    email = _email("Mixed.Case")
    user = await _create(stub, email, name="  Ann Example  ")
    assert (user.name, user.email, user.role) == ("Ann Example", email, "customer")
    assert user.id and user.create_time.seconds > 0 and user.update_time == user.create_time
    got = (await stub.GetUser(pb.GetUserRequest(id=user.id))).user
    assert got == user


async def test_an_internal_caller_may_create_an_admin(stub: UserServiceStub) -> None:
    assert (await _create(stub, role="admin")).role == "admin"


async def test_duplicate_email_in_another_case_is_already_exists(stub: UserServiceStub) -> None:
    email = _email("dup")
    await _create(stub, email)
    error = await _fails(_create(stub, email.upper()), grpc.StatusCode.ALREADY_EXISTS)
    assert details(error)["error_info"].reason == "EMAIL_TAKEN"


async def test_concurrent_duplicate_creates_let_exactly_one_succeed(
        stub: UserServiceStub) -> None:
    email = _email("race")
    results = await asyncio.gather(
        *(_create(stub, email.upper() if i % 2 else email) for i in range(5)),
        return_exceptions=True)
    winners = [r for r in results if isinstance(r, pb.User)]
    losers = [r for r in results if not isinstance(r, pb.User)]
    assert len(winners) == 1
    assert all(isinstance(r, grpc.aio.AioRpcError)
               and r.code() == grpc.StatusCode.ALREADY_EXISTS for r in losers)


async def test_update_replaces_name_and_email_and_optionally_password_and_role(
        stub: UserServiceStub) -> None:
    user = await _create(stub)
    new_email = _email("moved")
    response = await stub.UpdateUser(pb.UpdateUserRequest(id=user.id, name="Bea", email=new_email))
    _assert_no_secret(response)
    updated = response.user
    assert (updated.name, updated.email, updated.role) == ("Bea", new_email, "customer")
    assert updated.create_time == user.create_time
    assert updated.update_time.ToDatetime() > user.update_time.ToDatetime()
    await stub.Login(pb.LoginRequest(email=new_email, password=PASSWORD))  # password kept
    promoted = (await stub.UpdateUser(pb.UpdateUserRequest(
        id=user.id, name="Bea", email=new_email, password="a brand new secret", role="admin"
    ))).user
    assert promoted.role == "admin"
    await _fails(stub.Login(pb.LoginRequest(email=new_email, password=PASSWORD)),
                 grpc.StatusCode.UNAUTHENTICATED)
    await stub.Login(pb.LoginRequest(email=new_email, password="a brand new secret"))
    unchanged = (await stub.UpdateUser(pb.UpdateUserRequest(
        id=user.id, name="Bea", email=new_email, role=""))).user
    assert unchanged.role == "admin"


async def test_update_to_another_users_email_is_already_exists(stub: UserServiceStub) -> None:
    first, second = await _create(stub), await _create(stub)
    await _fails(stub.UpdateUser(pb.UpdateUserRequest(
        id=second.id, name="x", email=first.email.upper())), grpc.StatusCode.ALREADY_EXISTS)


async def test_a_deleted_user_is_not_found_everywhere_and_its_email_is_free(
        stub: UserServiceStub) -> None:
    user = await _create(stub)
    assert await stub.DeleteUser(pb.DeleteUserRequest(id=user.id)) == pb.DeleteUserResponse()
    calls = [
        stub.GetUser(pb.GetUserRequest(id=user.id)),
        stub.UpdateUser(pb.UpdateUserRequest(id=user.id, name="x", email=user.email)),
        stub.UpdateUser(pb.UpdateUserRequest(id=user.id, name="x", email=user.email,
                                             password="another password")),
        stub.DeleteUser(pb.DeleteUserRequest(id=user.id)),
    ]
    for call in calls:
        resource = details(await _fails(call, grpc.StatusCode.NOT_FOUND))["resource"]
        assert (resource.resource_type, resource.resource_name) == \
            ("portico.user.v1.User", user.id)
    await _fails(stub.Login(pb.LoginRequest(email=user.email, password=PASSWORD)),
                 grpc.StatusCode.UNAUTHENTICATED)
    listed = await _list_all(stub, page_size=100)
    assert user.id not in {u.id for u in listed}
    again = await _create(stub, user.email)
    assert again.id != user.id


async def test_unknown_id_is_not_found(stub: UserServiceStub) -> None:
    await _fails(stub.GetUser(pb.GetUserRequest(id="no-such-user")), grpc.StatusCode.NOT_FOUND)


async def _list_all(stub: UserServiceStub, *, page_size: int) -> list[pb.User]:
    users, token = [], ""
    while True:
        response = await stub.ListUsers(pb.ListUsersRequest(page_size=page_size, page_token=token))
        _assert_no_secret(response)
        assert len(response.users) <= (page_size or 20)
        users += response.users
        token = response.next_page_token
        if not token:
            return users


async def test_list_pages_oldest_first_each_user_once(stub: UserServiceStub) -> None:
    made = [await _create(stub) for _ in range(5)]
    everyone = await _list_all(stub, page_size=100)
    paged = await _list_all(stub, page_size=2)
    default = await _list_all(stub, page_size=0)
    ids = [u.id for u in everyone]
    assert [u.id for u in paged] == ids == [u.id for u in default]
    assert len(set(ids)) == len(ids)
    keys = [(u.create_time.ToDatetime(), u.id) for u in everyone]
    assert keys == sorted(keys)
    positions = [ids.index(u.id) for u in made]
    assert positions == sorted(positions)


async def test_list_default_page_is_twenty(stub: UserServiceStub) -> None:
    while len(await _list_all(stub, page_size=100)) <= 20:
        await _create(stub)
    first = await stub.ListUsers(pb.ListUsersRequest())
    assert len(first.users) == 20 and first.next_page_token
