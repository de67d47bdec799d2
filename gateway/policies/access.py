"""Who may do what: a route's access rule applied to a caller and the fields of a call.

Decided without a lookup, so a refusal reveals nothing: a user acting on another user is 403;
orders are scoped to their customer by the order service itself (another customer's order is
404, exactly as a missing one), so the caller's id goes into the call's `customer` field.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import Problem
from gateway.policies.auth import Principal
from gateway.routes.table import Access, Route


def authorize(route: Route, principal: Principal | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields to send upstream on behalf of `principal`; raises Problem(401) when the
    route needs a signed-in caller and Problem(403) when this caller may not do this."""
    if route.access is not Access.PUBLIC and principal is None:
        raise Problem(401, f"this operation needs {route.access.value}: sign in first",
                      code="UNAUTHENTICATED")
    admin = principal is not None and principal.is_admin
    if admin and not principal.verified and _needs_admin(route, principal, fields):
        # Revocations cannot be read (Redis is down): a demoted admin must not keep the rights.
        raise Problem(503, "admin rights cannot be checked right now; try again shortly",
                      code="REVOCATION_UNVERIFIED", headers={"Retry-After": "1"})
    if route.access is Access.ADMIN and not admin:
        raise _forbidden("this operation needs an admin")
    if route.access is Access.SELF_OR_ADMIN and not admin \
            and fields.get(route.owner_field or "id") != principal.subject:
        raise _forbidden("you may only act on your own user")
    if not admin:
        for rule in route.admin_only:
            if rule.claimed_by(fields):
                raise _forbidden(rule.why)
    if route.customer_field is not None:
        fields = dict(fields)
        if route.customer_is_caller or not admin:
            fields[route.customer_field] = principal.subject
        else:
            fields.setdefault(route.customer_field, "")
    return fields


def _needs_admin(route: Route, principal: Principal, fields: dict[str, Any]) -> bool:
    """Whether this call would be refused, or scoped more narrowly, for a non-admin."""
    return (route.access is Access.ADMIN
            or (route.access is Access.SELF_OR_ADMIN
                and fields.get(route.owner_field or "id") != principal.subject)
            or any(rule.claimed_by(fields) for rule in route.admin_only)
            or (route.customer_field is not None and not route.customer_is_caller))


def _forbidden(detail: str) -> Problem:
    return Problem(403, detail, code="PERMISSION_DENIED")
