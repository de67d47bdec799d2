"""Who may call what in the User service.

Caller rules (workload identities, from the peer certificate): every method of UserService is
public, so any workload with a certificate of the CA may call it, the gateway, the order service
(GetUser, to check a customer) and internal jobs alike.

End-user rules (the access token): sign-up is open, but giving a role needs an admin; a user's
record (GetUser, UpdateUser, DeleteUser) is the user's own or an admin's business; ListUsers is
for admins; Login is open; Logout ends the token it carries.

While Redis cannot be read, a token could not be checked against revocations by the admission;
this service then checks it against its own database (tokens_valid_after, and the user still
live), so here even admin rights hold during a Redis outage.
"""

from __future__ import annotations

from dataclasses import replace

from portico.user.v1 import user_pb2
from services.common.admission import Caller, current_caller
from services.common.callers import ANY_WORKLOAD
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.revocation import is_revoked
from services.user.store import UserStore

SERVICE = user_pb2.DESCRIPTOR.services_by_name["UserService"]
CALLERS = {
    "CreateUser": ANY_WORKLOAD,
    "GetUser": ANY_WORKLOAD,
    "UpdateUser": ANY_WORKLOAD,
    "DeleteUser": ANY_WORKLOAD,
    "ListUsers": ANY_WORKLOAD,
    "Login": ANY_WORKLOAD,
    "Logout": ANY_WORKLOAD,
}


class Rights:
    """The end-user rules, applied to the caller of the call being served."""

    def __init__(self, store: UserStore) -> None:
        self._store = store

    async def caller(self) -> Caller:
        """The caller, its token checked against the database when Redis could not be read."""
        caller = current_caller()
        if caller.claims is None or caller.checked:
            return caller
        state = await self._store.token_state(caller.claims.subject)
        if not state.live or is_revoked(caller.claims, state.valid_after, False):
            raise Unauthenticated("the access token has been revoked", reason="TOKEN_REVOKED")
        return replace(caller, checked=True)

    async def self_or_admin(self, user_id: str) -> Caller:
        """The caller, when it is the user `user_id` or an admin."""
        caller = await self.caller()
        if caller.signed_in().subject != user_id and not caller.is_admin():
            raise PermissionDenied("you may only act on your own user")
        return caller

    async def admin(self) -> Caller:
        """The caller, when it is an admin."""
        caller = await self.caller()
        caller.require_admin()
        return caller
