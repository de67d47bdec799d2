"""Who may call what in the Order service.

Caller rules (workload identities, from the peer certificate): every OrderService RPC is public,
open to any workload of the CA (the gateway, internal jobs).

End-user rules (the access token), applied where the orders are: every RPC needs a signed-in
user. A customer sees and changes only their own orders: an empty `customer` means the caller
(never "everyone"), a `customer` naming someone else is PERMISSION_DENIED, and only admins ship
or deliver. An admin may name any customer, and an empty `customer` means every customer. A new
order is always the caller's own.
"""

from __future__ import annotations

from portico.order.v1 import order_pb2
from services.common.admission import current_caller
from services.common.callers import ANY_WORKLOAD
from services.common.errors import PermissionDenied
from services.order.models import DELIVERED, SHIPPED

SERVICE = order_pb2.DESCRIPTOR.services_by_name["OrderService"]
CALLERS = {
    "ListOrders": ANY_WORKLOAD,
    "GetOrder": ANY_WORKLOAD,
    "CreateOrder": ANY_WORKLOAD,
    "UpdateOrder": ANY_WORKLOAD,
    "DeleteOrder": ANY_WORKLOAD,
}
ADMIN_STATUSES = (SHIPPED, DELIVERED)


def scope(requested: str) -> str:
    """The customer a read or change is limited to ("" for an admin's "every customer")."""
    caller = current_caller()
    subject = caller.signed_in().subject
    if requested == subject:
        return requested
    if caller.is_admin():
        return requested
    if requested:
        raise PermissionDenied("you may only see and change your own orders")
    return subject


def new_order_customer(requested: str) -> str:
    """The customer of a new order: the caller, whatever the request names."""
    subject = current_caller().signed_in().subject
    if requested and requested != subject:
        raise PermissionDenied("an order is placed for the signed-in customer only")
    return subject


def check_status_change(status: str | None) -> None:
    """Only admins ship and deliver."""
    if status in ADMIN_STATUSES and not current_caller().is_admin():
        raise PermissionDenied(f"only an admin may set an order {status}")
