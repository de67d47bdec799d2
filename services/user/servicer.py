"""UserServicer: the gRPC face of the User service. It checks input, translates protobuf to and
from the store's records, hashes passwords and issues tokens; the store does the rest."""

from __future__ import annotations

import logging

import grpc

from portico.user.v1 import user_pb2, user_pb2_grpc
from services.common.errors import Unauthenticated, Violations
from services.user import validation as check
from services.user.passwords import Passwords
from services.user.store import UserRecord, UserStore
from services.user.tokens import TokenIssuer

log = logging.getLogger("portico.user")

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
BAD_CREDENTIALS = "invalid email or password"


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Implements portico.user.v1.UserService. Passwords and hashes never leave it, nor reach
    a log line."""

    def __init__(self, store: UserStore, tokens: TokenIssuer, *,
                 passwords: Passwords | None = None) -> None:
        self._store = store
        self._tokens = tokens
        self._passwords = passwords or Passwords()

    async def CreateUser(self, request: user_pb2.CreateUserRequest,
                         context: grpc.aio.ServicerContext) -> user_pb2.CreateUserResponse:
        v = Violations()
        check.check_name(v, "name", request.name)
        check.check_email(v, "email", request.email)
        check.check_password(v, "password", request.password)
        check.check_role(v, "role", request.role)
        v.raise_if_any()
        user = await self._store.create(
            name=request.name.strip(), email=request.email,
            password_hash=await self._passwords.hash(request.password),
            role=request.role or "customer",
        )
        log.info("user created", extra={"user_id": user.id, "role": user.role})
        return user_pb2.CreateUserResponse(user=to_proto(user))

    async def GetUser(self, request: user_pb2.GetUserRequest,
                      context: grpc.aio.ServicerContext) -> user_pb2.GetUserResponse:
        v = Violations()
        check.check_id(v, "id", request.id)
        v.raise_if_any()
        return user_pb2.GetUserResponse(user=to_proto(await self._store.get(request.id)))

    async def UpdateUser(self, request: user_pb2.UpdateUserRequest,
                         context: grpc.aio.ServicerContext) -> user_pb2.UpdateUserResponse:
        v = Violations()
        check.check_id(v, "id", request.id)
        check.check_name(v, "name", request.name)
        check.check_email(v, "email", request.email)
        has_password = request.HasField("password")
        if has_password:
            check.check_password(v, "password", request.password)
        check.check_role(v, "role", request.role)
        v.raise_if_any()
        # Check existence before spending a hash on a user that is not there.
        if has_password:
            await self._store.get(request.id)
        user = await self._store.update(
            request.id, name=request.name.strip(), email=request.email,
            password_hash=await self._passwords.hash(request.password) if has_password else None,
            role=request.role or None,  # absent or empty: unchanged
        )
        return user_pb2.UpdateUserResponse(user=to_proto(user))

    async def DeleteUser(self, request: user_pb2.DeleteUserRequest,
                         context: grpc.aio.ServicerContext) -> user_pb2.DeleteUserResponse:
        v = Violations()
        check.check_id(v, "id", request.id)
        v.raise_if_any()
        await self._store.delete(request.id)
        log.info("user deleted", extra={"user_id": request.id})
        return user_pb2.DeleteUserResponse()

    async def ListUsers(self, request: user_pb2.ListUsersRequest,
                        context: grpc.aio.ServicerContext) -> user_pb2.ListUsersResponse:
        v = Violations()
        check.check_page(v, request.page_size, request.page_token)
        v.raise_if_any()
        users, next_token = await self._store.list_page(
            page_size=request.page_size or check.DEFAULT_PAGE_SIZE, page_token=request.page_token)
        return user_pb2.ListUsersResponse(users=[to_proto(u) for u in users],
                                          next_page_token=next_token)

    async def Login(self, request: user_pb2.LoginRequest,
                    context: grpc.aio.ServicerContext) -> user_pb2.LoginResponse:
        v = Violations()
        check.check_email(v, "email", request.email)
        v.check(0 < len(request.password) <= check.MAX_PASSWORD, "password",
                f"1 to {check.MAX_PASSWORD} characters")
        v.raise_if_any()
        found = await self._store.find_credentials(request.email)
        if found is None:
            await self._passwords.verify_nobody(request.password)
            raise Unauthenticated(BAD_CREDENTIALS)
        if not await self._passwords.verify(found.password_hash, request.password):
            raise Unauthenticated(BAD_CREDENTIALS)
        if self._passwords.needs_rehash(found.password_hash):
            await self._store.replace_password_hash(
                found.user.id, old_hash=found.password_hash,
                new_hash=await self._passwords.hash(request.password))
        issued = self._tokens.issue(subject=found.user.id, role=found.user.role)
        return user_pb2.LoginResponse(access_token=issued.access_token, token_type="Bearer",
                                      expires_in=issued.expires_in)


def to_proto(user: UserRecord) -> user_pb2.User:
    message = user_pb2.User(id=user.id, name=user.name, email=user.email, role=user.role)
    message.create_time.FromDatetime(user.created_at)
    message.update_time.FromDatetime(user.updated_at)
    return message
