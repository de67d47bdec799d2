"""Rights that end: a demoted admin, a deleted user, a changed password and a logout are
refused by every service within a second, over gRPC; and what holds while Redis is down."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from portico.order.v1 import order_pb2, order_pb2_grpc
from portico.product.v1 import product_pb2, product_pb2_grpc
from portico.user.v1 import user_pb2, user_pb2_grpc
from scripts.devstack.redis_server import RedisServer
from tests.integration.order.support import Stack, unique
from tests.trust import channel, refused_within, tls_for

PASSWORD = "long-enough-1"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


class As:
    """Stubs of the three services carrying one access token (through the gateway identity)."""

    def __init__(self, stack: Stack, token: str) -> None:
        tls = tls_for(stack.settings.state_dir, "gateway")
        self.channels = [channel(address, tls, token=token) for address in (
            stack.settings.user_addrs[0], stack.settings.product_addrs[0], stack.order_address)]
        self.users = user_pb2_grpc.UserServiceStub(self.channels[0])
        self.products = product_pb2_grpc.ProductServiceStub(self.channels[1])
        self.orders = order_pb2_grpc.OrderServiceStub(self.channels[2])

    async def __aenter__(self) -> As:
        return self

    async def __aexit__(self, *exc) -> None:
        for opened in self.channels:
            await opened.close()


async def signed_up(stack: Stack, role: str = "") -> tuple[str, str, str]:
    """(id, email, token) of a new user, signed in through Login."""
    email = f"{unique('r')}@example.com"
    user = (await stack.users.CreateUser(user_pb2.CreateUserRequest(
        name="Rita", email=email, password=PASSWORD, role=role))).user
    token = (await stack.users.Login(user_pb2.LoginRequest(email=email,
                                                           password=PASSWORD))).access_token
    return user.id, email, token


async def test_a_demoted_admin_loses_admin_rights_everywhere_within_a_second(
        stack: Stack) -> None:
    admin_id, email, token = await signed_up(stack, "admin")
    product = await stack.product(price="3.00")
    async with As(stack, token) as admin:
        # Used everywhere first, so every service has a fresh "not revoked" in its memo.
        await admin.users.ListUsers(user_pb2.ListUsersRequest())
        await admin.products.UpdateProduct(product_pb2.UpdateProductRequest(id=product,
                                                                            price="3.50"))
        await admin.orders.ListOrders(order_pb2.ListOrdersRequest())
        await stack.users.UpdateUser(user_pb2.UpdateUserRequest(
            id=admin_id, name="Rita", email=email, role="customer"))
        await refused_within(lambda: admin.users.ListUsers(user_pb2.ListUsersRequest()))
        await refused_within(lambda: admin.products.UpdateProduct(
            product_pb2.UpdateProductRequest(id=product, price="0.01")))
        await refused_within(lambda: admin.orders.ListOrders(order_pb2.ListOrdersRequest()))
    again = (await stack.users.Login(user_pb2.LoginRequest(email=email, password=PASSWORD)))
    async with As(stack, again.access_token) as customer:
        await customer.orders.ListOrders(order_pb2.ListOrdersRequest())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await customer.users.ListUsers(user_pb2.ListUsersRequest())
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_deleted_users_token_lists_and_cancels_nothing(stack: Stack) -> None:
    user_id, _, token = await signed_up(stack)
    product = await stack.product(stock=5)
    async with As(stack, token) as user:
        placed = await user.orders.CreateOrder(order_pb2.CreateOrderRequest(
            items=[order_pb2.OrderItemInput(product_id=product, quantity=1)],
            payment=order_pb2.Payment(token="tok_visa")))
        await user.orders.ListOrders(order_pb2.ListOrdersRequest())
        await user.users.DeleteUser(user_pb2.DeleteUserRequest(id=user_id))
        await refused_within(lambda: user.orders.ListOrders(order_pb2.ListOrdersRequest()))
        await refused_within(lambda: user.orders.DeleteOrder(
            order_pb2.DeleteOrderRequest(id=placed.order.id)))
        # The user service remembers the token as good for up to half a second after the
        # DeleteUser it carried: until then its owner is simply not found.
        await refused_within(lambda: user.users.GetUser(user_pb2.GetUserRequest(id=user_id)),
                             interim={grpc.StatusCode.NOT_FOUND})
    kept = await stack.orders.GetOrder(order_pb2.GetOrderRequest(id=placed.order.id))
    assert kept.order.status == "confirmed"


async def test_a_password_change_ends_the_old_tokens(stack: Stack) -> None:
    user_id, email, token = await signed_up(stack)
    async with As(stack, token) as old:
        await old.orders.ListOrders(order_pb2.ListOrdersRequest())
        await stack.users.UpdateUser(user_pb2.UpdateUserRequest(
            id=user_id, name="Rita", email=email, password="another-password"))
        await refused_within(lambda: old.orders.ListOrders(order_pb2.ListOrdersRequest()))
        await refused_within(lambda: old.users.GetUser(user_pb2.GetUserRequest(id=user_id)))
    fresh = await stack.users.Login(user_pb2.LoginRequest(email=email,
                                                          password="another-password"))
    async with As(stack, fresh.access_token) as new:
        await new.orders.ListOrders(order_pb2.ListOrdersRequest())


async def test_logout_ends_that_token_only(stack: Stack) -> None:
    user_id, email, token = await signed_up(stack)
    other = (await stack.users.Login(user_pb2.LoginRequest(email=email,
                                                           password=PASSWORD))).access_token
    async with As(stack, token) as leaving, As(stack, other) as staying:
        await leaving.orders.ListOrders(order_pb2.ListOrdersRequest())
        await leaving.products.ListProducts(product_pb2.ListProductsRequest())
        await leaving.users.Logout(user_pb2.LogoutRequest())
        await refused_within(lambda: leaving.orders.ListOrders(order_pb2.ListOrdersRequest()))
        await refused_within(lambda: leaving.users.GetUser(user_pb2.GetUserRequest(id=user_id)))
        # A token sent is checked, on public reads too.
        await refused_within(lambda: leaving.products.ListProducts(
            product_pb2.ListProductsRequest()))
        await staying.orders.ListOrders(order_pb2.ListOrdersRequest())
        await staying.users.GetUser(user_pb2.GetUserRequest(id=user_id))


async def test_while_redis_is_down(stack: Stack, redis_server: RedisServer,
                                   caplog: pytest.LogCaptureFixture) -> None:
    """Customers are served unverified (logged); admin rights are refused with UNAVAILABLE,
    except in the user service, which checks its own database; a logout made meanwhile is
    delivered once Redis is back."""
    _, _, customer = await signed_up(stack)
    _, _, admin = await signed_up(stack, "admin")
    demoted_id, demoted_email, demoted = await signed_up(stack, "admin")
    product = await stack.product(price="4.00")
    async with As(stack, customer) as user, As(stack, admin) as boss, \
            As(stack, demoted) as former:
        with caplog.at_level(logging.ERROR, logger="portico.revocation"):
            redis_server.stop()
            try:
                await asyncio.sleep(0.6)   # past every memo
                await user.orders.ListOrders(order_pb2.ListOrdersRequest())
                for call in (boss.products.UpdateProduct(product_pb2.UpdateProductRequest(
                                 id=product, price="0.01")),
                             boss.orders.ListOrders(order_pb2.ListOrdersRequest())):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await call
                    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                # The user service checks tokens_valid_after itself.
                await boss.users.ListUsers(user_pb2.ListUsersRequest())
                await boss.users.UpdateUser(user_pb2.UpdateUserRequest(
                    id=demoted_id, name="Rita", email=demoted_email, role="customer"))
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await former.users.ListUsers(user_pb2.ListUsersRequest())
                assert caught.value.code() == UNAUTHENTICATED
                await user.users.Logout(user_pb2.LogoutRequest())   # kept, and retried
            finally:
                redis_server.start()
        assert any("revocation cannot be checked" in r.getMessage() for r in caplog.records)
        await refused_within(lambda: user.orders.ListOrders(order_pb2.ListOrdersRequest()),
                             seconds=3.0)
        await refused_within(lambda: former.orders.ListOrders(order_pb2.ListOrdersRequest()),
                             seconds=3.0)
        await boss.products.UpdateProduct(product_pb2.UpdateProductRequest(id=product,
                                                                           price="4.50"))
