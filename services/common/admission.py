"""Who is calling, decided once per call before the servicer runs.

Two identities travel with every call: the workload's, in its client certificate (checked
against the service's caller rules), and the end user's, in an access token in the
`authorization` metadata (checked with the public key, then against revocations in Redis). The
servicer reads the result with `current_caller()` and applies its per-method rules to it.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass

import grpc

from services.common.callers import CallerRules
from services.common.errors import PermissionDenied, Unauthenticated, Unavailable
from services.common.identity import Claims, InvalidToken, TokenVerifier, bearer_token
from services.common.mtls import peer_identity
from services.common.revocation import RevocationReader

log = logging.getLogger("portico.admission")

# While revocations cannot be read, an admin token's rights cannot be trusted: ask again soon.
UNVERIFIED_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Caller:
    """The workload identity, and the end user's claims (None: anonymous). `checked` is False
    when the token could not be checked against revocations (Redis unreadable). `token` is the
    raw access token, passed on to the services this call calls."""

    workload: str
    claims: Claims | None = None
    checked: bool = True
    token: str | None = None

    @property
    def subject(self) -> str | None:
        return self.claims.subject if self.claims is not None else None

    def signed_in(self) -> Claims:
        """The claims; UNAUTHENTICATED for an anonymous call."""
        if self.claims is None:
            raise Unauthenticated("this operation needs an access token "
                                  "(authorization: Bearer <token>)")
        return self.claims

    def is_admin(self) -> bool:
        """Whether the end user holds admin rights now. A token claiming them that could not be
        checked against revocations is UNAVAILABLE: a demoted admin never keeps the rights."""
        if self.claims is None or not self.claims.is_admin:
            return False
        if not self.checked:
            raise Unavailable("admin rights cannot be verified right now; retry shortly",
                              reason="REVOCATION_UNVERIFIED",
                              retry_after=UNVERIFIED_RETRY_SECONDS)
        return True

    def require_admin(self) -> None:
        self.signed_in()
        if not self.is_admin():
            raise PermissionDenied("this operation needs an admin")


ANONYMOUS_JOB = Caller(workload="unknown")
_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller",
                                                                  default=ANONYMOUS_JOB)


def current_caller() -> Caller:
    """The caller of the call being served (anonymous outside a call)."""
    return _current.get()


def set_caller(caller: Caller) -> contextvars.Token:
    return _current.set(caller)


def reset_caller(token: contextvars.Token) -> None:
    _current.reset(token)


class Admission:
    """Applies the caller rules to the peer certificate and checks the access token."""

    def __init__(self, rules: CallerRules, *, tokens: TokenVerifier | None = None,
                 revocation: RevocationReader | None = None) -> None:
        self._rules = rules
        self._tokens = tokens
        self._revocation = revocation

    async def admit(self, method: str, context: grpc.aio.ServicerContext) -> Caller:
        """The caller; PERMISSION_DENIED for a workload the rules refuse, UNAUTHENTICATED for a
        token that is bad or revoked."""
        workload = peer_identity(context)
        if not self._rules.allows(method, workload):
            log.warning("caller refused", extra={"method": method, "workload": workload})
            raise PermissionDenied(f"workload {workload!r} may not call {method}",
                                   reason="CALLER_NOT_ALLOWED", metadata={"workload": workload})
        if self._tokens is None:
            return Caller(workload)
        try:
            token = bearer_token(context.invocation_metadata())
            claims = self._tokens.verify(token) if token is not None else None
        except InvalidToken as error:
            raise Unauthenticated(str(error), reason="INVALID_TOKEN") from None
        if claims is None:
            return Caller(workload)
        revoked = await self._revocation.revoked(claims) if self._revocation else None
        if revoked:
            raise Unauthenticated("the access token has been revoked", reason="TOKEN_REVOKED")
        return Caller(workload, claims, checked=revoked is not None, token=token)
