"""Who may call what in the Product service.

Caller rules (workload identities, from the peer certificate): the catalogue's RPCs are public,
open to any workload of the CA (the gateway, internal jobs); the stock RPCs move stock behind
orders' backs, so only the order service may call them.

End-user rules (the access token): reads are anyone's; catalogue writes are admins' (see
`require_admin`: an admin token that cannot be checked against revocations is UNAVAILABLE).
The stock RPCs act for the order service itself and need no end user.
"""

from __future__ import annotations

from portico.product.v1 import product_pb2
from services.common.admission import current_caller
from services.common.callers import ANY_WORKLOAD

SERVICE = product_pb2.DESCRIPTOR.services_by_name["ProductService"]
ORDER_SERVICE_ONLY = frozenset({"order"})
CALLERS = {
    "ListProducts": ANY_WORKLOAD,
    "GetProduct": ANY_WORKLOAD,
    "CreateProduct": ANY_WORKLOAD,
    "UpdateProduct": ANY_WORKLOAD,
    "DeleteProduct": ANY_WORKLOAD,
    "ReserveStock": ORDER_SERVICE_ONLY,
    "ReleaseStock": ORDER_SERVICE_ONLY,
    "CommitStock": ORDER_SERVICE_ONLY,
}


def require_admin() -> None:
    """PERMISSION_DENIED (UNAUTHENTICATED without a token) unless an admin is calling."""
    current_caller().require_admin()
