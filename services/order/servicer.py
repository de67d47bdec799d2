"""The OrderService servicer: protobuf in, domain calls, protobuf out. No SQL, no business
rules beyond translation; errors are raised as ServiceErrors for the interceptor to map."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from portico.order.v1 import order_pb2, order_pb2_grpc
from services.common.errors import NotFound
from services.order import access, validation
from services.order.lifecycle import OrderLifecycle
from services.order.models import Order, money
from services.order.placement import OrderPlacement
from services.order.store import OrderStore

SERVICE_NAME = order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name


class OrderServicer(order_pb2_grpc.OrderServiceServicer):
    """Serves portico.order.v1.OrderService."""

    def __init__(self, *, store: OrderStore, placement: OrderPlacement,
                 lifecycle: OrderLifecycle) -> None:
        self._store = store
        self._placement = placement
        self._lifecycle = lifecycle

    async def ListOrders(self, request, context):
        page = validation.page_request(page_size=request.page_size,
                                       page_token=request.page_token, customer=request.customer)
        customer = access.scope(page.customer)
        found, more = await self._store.page(size=page.size, after=page.after,
                                             customer=customer)
        token = ""
        if more:
            token = validation.encode_page_token(found[-1].created_at, found[-1].id)
        return order_pb2.ListOrdersResponse(orders=[order_message(o) for o in found],
                                            next_page_token=token)

    async def GetOrder(self, request, context):
        validation.order_ref(request.id, request.customer)
        order = await self._store.get(request.id, customer=access.scope(request.customer))
        if order is None:
            raise NotFound(f"order {request.id} not found", resource=("order", request.id))
        return order_pb2.GetOrderResponse(order=order_message(order))

    async def CreateOrder(self, request, context):
        new = validation.new_order(
            customer=access.new_order_customer(request.customer),
            items=[(item.product_id, item.quantity) for item in request.items],
            token=request.payment.token,
            shipping_address=request.shipping_address,
            note=request.note,
            idempotency_key=request.idempotency_key,
        )
        order = await self._placement.place(new, context=context)
        return order_pb2.CreateOrderResponse(order=order_message(order))

    async def UpdateOrder(self, request, context):
        change = validation.OrderChange(
            shipping_address=_optional(request, "shipping_address"),
            note=_optional(request, "note"),
            status=_optional(request, "status"),
        )
        validation.order_change(request.id, request.customer, change)
        customer = access.scope(request.customer)
        access.check_status_change(change.status)
        order = await self._lifecycle.update(request.id, customer=customer, change=change)
        return order_pb2.UpdateOrderResponse(order=order_message(order))

    async def DeleteOrder(self, request, context):
        validation.order_ref(request.id, request.customer)
        await self._lifecycle.delete(request.id, customer=access.scope(request.customer))
        return order_pb2.DeleteOrderResponse()


def _optional(request, name: str) -> str | None:
    return getattr(request, name) if request.HasField(name) else None


def order_message(order: Order) -> order_pb2.Order:
    """The wire form of an order: amounts as exact two-place decimal strings."""
    created, updated = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    created.FromDatetime(order.created_at)
    updated.FromDatetime(order.updated_at)
    return order_pb2.Order(
        id=order.id, customer=order.customer, total=money(order.total),
        currency=order.currency, status=order.status,
        shipping_address=order.shipping_address, note=order.note,
        payment_reference=order.payment_reference, create_time=created, update_time=updated,
        items=[order_pb2.OrderItem(product_id=line.product_id, name=line.name,
                                   quantity=line.quantity, unit_price=money(line.unit_price),
                                   line_total=money(line.line_total))
               for line in order.items],
    )
