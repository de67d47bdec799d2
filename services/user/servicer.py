"""UserServicer: the gRPC face of the User service. It checks input and the caller's rights,
translates protobuf to and from the store's records, hashes passwords, issues and ends tokens;
the store does the rest."""

from __future__ import annotations

import logging
import time

import grpc

from portico.user.v1 import user_pb2, user_pb2_grpc
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Violations,
)
from services.user import validation as check
from services.user.access import Rights
from services.user.passwords import Passwords
from services.user.revoker import Revoker
from services.user.store import UserRecord, UserStore, email_taken_error
from services.user.throttle import LoginThrottle
from services.user.tokens import TokenIssuer

log = logging.getLogger("portico.user")

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
BAD_CREDENTIALS = "invalid email or password"


class UserServicer(user_pb2_grpc.UserServiceServicer):
    """Implements portico.user.v1.UserService. Passwords and hashes never leave it, nor reach
    a log line."""

    def __init__(self, store: UserStore, tokens: TokenIssuer, *,
                 passwords: Passwords | None = None, revoker: Revoker | None = None,
                 throttle: LoginThrottle | None = None) -> None:
        self._store = store
        self._tokens = tokens
        self._passwords = passwords or Passwords()
        self._revoker = revoker or Revoker(None, token_ttl=tokens.ttl_seconds)
        self._throttle = throttle or LoginThrottle(None)
        self._rights = Rights(store)

    async def CreateUser(self, request: user_pb2.CreateUserRequest,
                         context: grpc.aio.ServicerContext) -> user_pb2.CreateUserResponse:
        v = Violations()
        check.check_name(v, "name", request.name)
        check.check_email(v, "email", request.email)
        check.check_password(v, "password", request.password)
        check.check_role(v, "role", request.role)
        v.raise_if_any()
        if request.role:
            await self._rights.admin()
        # A duplicate costs a look-up, not a hash (the insert still decides races).
        if await self._store.email_taken(request.email):
            raise email_taken_error(request.email)
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
        await self._rights.self_or_admin(request.id)
        return user_pb2.GetUserResponse(user=to_proto(await self._store.get(request.id)))

    async def UpdateUser(self, request: user_pb2.UpdateUserRequest,
                         context: grpc.aio.ServicerContext) -> user_pb2.UpdateUserResponse:
        has_password = request.HasField("password")
        role = request.role or None  # absent or empty: unchanged
        _check_update(request, has_password)
        caller = await self._rights.self_or_admin(request.id)
        if role is not None and not caller.is_admin():
            raise PermissionDenied("only an admin may change a role")
        current = await self._store.credentials_of(request.id)
        email_changes = request.email.lower() != current.user.email.lower()
        if (has_password or email_changes) and caller.subject == request.id:
            await self._check_current_password(request, current.password_hash,
                                               current.user.email)
        if email_changes and await self._store.email_taken(request.email,
                                                           other_than=request.id):
            raise email_taken_error(request.email)
        user, old_role = await self._store.update(
            request.id, name=request.name.strip(), email=request.email,
            password_hash=await self._passwords.hash(request.password) if has_password else None,
            role=role,
        )
        if has_password or (role is not None and role != old_role):
            await self._end_tokens(user.id, "password changed" if has_password
                                   else "role changed")
        return user_pb2.UpdateUserResponse(user=to_proto(user))

    async def DeleteUser(self, request: user_pb2.DeleteUserRequest,
                         context: grpc.aio.ServicerContext) -> user_pb2.DeleteUserResponse:
        v = Violations()
        check.check_id(v, "id", request.id)
        v.raise_if_any()
        await self._rights.self_or_admin(request.id)
        await self._store.delete(request.id)
        await self._end_tokens(request.id, "user deleted")
        log.info("user deleted", extra={"user_id": request.id})
        return user_pb2.DeleteUserResponse()

    async def ListUsers(self, request: user_pb2.ListUsersRequest,
                        context: grpc.aio.ServicerContext) -> user_pb2.ListUsersResponse:
        v = Violations()
        check.check_page(v, request.page_size, request.page_token)
        v.raise_if_any()
        await self._rights.admin()
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
        await self._throttle.attempt(request.email)
        # Taken before the account is read: a role or password change that commits after
        # this read ends the token we are about to issue (its moment is later than this).
        issued_at = time.time()
        found = await self._store.find_credentials(request.email)
        if found is None:
            await self._passwords.verify_nobody(request.password)
            raise Unauthenticated(BAD_CREDENTIALS)
        if not await self._passwords.verify(found.password_hash, request.password):
            raise Unauthenticated(BAD_CREDENTIALS)
        await self._throttle.succeeded(request.email)
        if self._passwords.needs_rehash(found.password_hash):
            await self._store.replace_password_hash(
                found.user.id, old_hash=found.password_hash,
                new_hash=await self._passwords.hash(request.password))
        issued = self._tokens.issue(subject=found.user.id, role=found.user.role,
                                    issued_at=issued_at)
        return user_pb2.LoginResponse(access_token=issued.access_token, token_type="Bearer",
                                      expires_in=issued.expires_in)

    async def Logout(self, request: user_pb2.LogoutRequest,
                     context: grpc.aio.ServicerContext) -> user_pb2.LogoutResponse:
        claims = (await self._rights.caller()).signed_in()
        if claims.token_id is None:
            raise FailedPrecondition("this token has no id to end; it expires by itself",
                                     reason="TOKEN_WITHOUT_ID")
        await self._revoker.deny(claims.subject, claims.token_id, claims.expires_at)
        log.info("logged out", extra={"user_id": claims.subject})
        return user_pb2.LogoutResponse()

    async def _check_current_password(self, request: user_pb2.UpdateUserRequest,
                                      password_hash: str, email: str) -> None:
        if not request.HasField("current_password"):
            raise InvalidArgument("changing your password or email needs your current password",
                                  violations=[("current_password", "required")])
        # A guess at the current password is a guess like a login: throttled alike.
        await self._throttle.attempt(email)
        if not await self._passwords.verify(password_hash, request.current_password):
            raise PermissionDenied("the current password is not right",
                                   reason="WRONG_CURRENT_PASSWORD")
        await self._throttle.succeeded(email)

    async def _end_tokens(self, user_id: str, why: str) -> None:
        # Taken after the change committed: a token issued from a read made before the commit
        # has an earlier moment, and is ended with the rest.
        at = time.time()
        await self._store.end_tokens(user_id, at)
        await self._revoker.end_tokens(user_id, at)
        log.info("tokens ended", extra={"user_id": user_id, "why": why})


def _check_update(request: user_pb2.UpdateUserRequest, has_password: bool) -> None:
    v = Violations()
    check.check_id(v, "id", request.id)
    check.check_name(v, "name", request.name)
    check.check_email(v, "email", request.email)
    if has_password:
        check.check_password(v, "password", request.password)
    if request.HasField("current_password"):
        v.check(0 < len(request.current_password) <= check.MAX_PASSWORD, "current_password",
                f"1 to {check.MAX_PASSWORD} characters")
    check.check_role(v, "role", request.role)
    v.raise_if_any()


def to_proto(user: UserRecord) -> user_pb2.User:
    message = user_pb2.User(id=user.id, name=user.name, email=user.email, role=user.role)
    message.create_time.FromDatetime(user.created_at)
    message.update_time.FromDatetime(user.updated_at)
    return message
