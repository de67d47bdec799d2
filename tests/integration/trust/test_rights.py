"""The end user's rights, checked where the data is: each service reads the access token the
call carries, whoever the calling workload is (here: the gateway's identity, as a compromised
or buggy edge would call)."""

from __future__ import annotations

import grpc
import pytest

from portico.order.v1 import order_pb2, order_pb2_grpc
from portico.product.v1 import product_pb2, product_pb2_grpc
from portico.user.v1 import user_pb2, user_pb2_grpc
from tests.integration.order.support import Stack, create_request, unique
from tests.trust import channel, refused_within, tls_for


async def refused(call, code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


def users_as(stack: Stack, token: str | None):
    target = channel(stack.settings.user_addrs[0], tls_for(stack.settings.state_dir, "gateway"),
                     token=token)
    return target, user_pb2_grpc.UserServiceStub(target)


# -- orders ------------------------------------------------------------------------------------
async def test_a_customer_cannot_touch_another_customers_order(stack: Stack) -> None:
    owner, stranger = await stack.customer(), await stack.customer()
    product = await stack.product(stock=10)
    order = await stack.place(owner, [(product, 1)])
    theirs = stack.as_customer(stranger)
    # Naming the owner is refused; naming nobody means oneself, and the order is not found.
    await refused(theirs.GetOrder(order_pb2.GetOrderRequest(id=order.id, customer=owner)))
    await refused(theirs.GetOrder(order_pb2.GetOrderRequest(id=order.id)),
                  grpc.StatusCode.NOT_FOUND)
    await refused(theirs.UpdateOrder(order_pb2.UpdateOrderRequest(id=order.id,
                                                                  status="shipped")))
    await refused(theirs.UpdateOrder(order_pb2.UpdateOrderRequest(id=order.id,
                                                                  status="cancelled")),
                  grpc.StatusCode.NOT_FOUND)
    await refused(theirs.DeleteOrder(order_pb2.DeleteOrderRequest(id=order.id)),
                  grpc.StatusCode.NOT_FOUND)
    await refused(theirs.DeleteOrder(order_pb2.DeleteOrderRequest(id=order.id,
                                                                  customer=owner)))
    still = await stack.orders.GetOrder(order_pb2.GetOrderRequest(id=order.id))
    assert still.order.status == "confirmed"


async def test_an_empty_customer_is_the_caller_never_everyone(stack: Stack) -> None:
    mine, other = await stack.customer(), await stack.customer()
    product = await stack.product(stock=10)
    await stack.place(mine, [(product, 1)])
    await stack.place(other, [(product, 1)])
    listed = await stack.as_customer(mine).ListOrders(order_pb2.ListOrdersRequest(page_size=100))
    assert {o.customer for o in listed.orders} == {mine}
    await refused(stack.as_customer(mine).ListOrders(order_pb2.ListOrdersRequest(
        customer=other)))
    everyone = await stack.orders.ListOrders(order_pb2.ListOrdersRequest(page_size=100))
    assert {mine, other} <= {o.customer for o in everyone.orders}   # an admin's call


async def test_a_customer_may_not_ship_even_their_own_order(stack: Stack) -> None:
    customer, product = await stack.customer(), await stack.product(stock=10)
    order = await stack.place(customer, [(product, 1)])
    own = stack.as_customer(customer)
    for status in ("shipped", "delivered"):
        await refused(own.UpdateOrder(order_pb2.UpdateOrderRequest(id=order.id, status=status)))
    noted = await own.UpdateOrder(order_pb2.UpdateOrderRequest(id=order.id, note="ring twice"))
    assert noted.order.note == "ring twice"
    shipped = await stack.orders.UpdateOrder(order_pb2.UpdateOrderRequest(id=order.id,
                                                                         status="shipped"))
    assert shipped.order.status == "shipped"


async def test_an_order_is_placed_for_the_caller_only(stack: Stack) -> None:
    payer, beneficiary = await stack.customer(), await stack.customer()
    product = await stack.product(stock=10)
    await refused(stack.as_customer(payer).CreateOrder(
        create_request(beneficiary, [(product, 1)])))
    placed = await stack.as_customer(payer).CreateOrder(create_request("", [(product, 1)]))
    assert placed.order.customer == payer
    assert await stack.stock(product) == 9


async def test_orders_need_a_signed_in_caller(stack: Stack) -> None:
    async with channel(stack.order_address, tls_for(stack.settings.state_dir, "gateway")) as target:
        anonymous = order_pb2_grpc.OrderServiceStub(target)
        await refused(anonymous.ListOrders(order_pb2.ListOrdersRequest()),
                      grpc.StatusCode.UNAUTHENTICATED)


# -- users -------------------------------------------------------------------------------------
async def test_only_an_admin_gives_a_role_at_sign_up(stack: Stack) -> None:
    customer = await stack.customer()
    for token in (None, stack.token(customer)):
        target, users = users_as(stack, token)
        async with target:
            for role in ("admin", "customer"):
                await refused(users.CreateUser(user_pb2.CreateUserRequest(
                    name="Mallory", email=f"{unique('m')}@example.com",
                    password="long-enough-1", role=role)),
                    grpc.StatusCode.UNAUTHENTICATED if token is None
                    else grpc.StatusCode.PERMISSION_DENIED)
            signed_up = await users.CreateUser(user_pb2.CreateUserRequest(
                name="Ann", email=f"{unique('a')}@example.com", password="long-enough-1"))
            assert signed_up.user.role == "customer"
    made = await stack.users.CreateUser(user_pb2.CreateUserRequest(
        name="Boss", email=f"{unique('b')}@example.com", password="long-enough-1",
        role="admin"))
    assert made.user.role == "admin"


async def test_a_users_record_is_theirs_or_an_admins(stack: Stack) -> None:
    me, other = await stack.customer(), await stack.customer()
    target, users = users_as(stack, stack.token(me))
    async with target:
        assert (await users.GetUser(user_pb2.GetUserRequest(id=me))).user.id == me
        await refused(users.GetUser(user_pb2.GetUserRequest(id=other)))
        await refused(users.UpdateUser(user_pb2.UpdateUserRequest(
            id=other, name="X", email=f"{unique('x')}@example.com")))
        await refused(users.DeleteUser(user_pb2.DeleteUserRequest(id=other)))
        await refused(users.ListUsers(user_pb2.ListUsersRequest()))
    target, users = users_as(stack, None)
    async with target:
        await refused(users.GetUser(user_pb2.GetUserRequest(id=me)),
                      grpc.StatusCode.UNAUTHENTICATED)
        await refused(users.ListUsers(user_pb2.ListUsersRequest()),
                      grpc.StatusCode.UNAUTHENTICATED)
    assert (await stack.users.GetUser(user_pb2.GetUserRequest(id=other))).user.id == other


async def test_changing_ones_password_or_email_needs_the_current_one(stack: Stack) -> None:
    email = f"{unique('p')}@example.com"
    user = (await stack.users.CreateUser(user_pb2.CreateUserRequest(
        name="Pat", email=email, password="first-password"))).user
    target, users = users_as(stack, stack.token(user.id))
    async with target:
        for change in ({"password": "second-password"},
                       {"email": f"{unique('q')}@example.com"}):
            request = user_pb2.UpdateUserRequest(id=user.id, name="Pat", **{
                "email": email, **change})
            await refused(users.UpdateUser(request), grpc.StatusCode.INVALID_ARGUMENT)
            request.current_password = "wrong-password"
            await refused(users.UpdateUser(request))
        renamed = await users.UpdateUser(user_pb2.UpdateUserRequest(
            id=user.id, name="Patricia", email=email))   # neither: no password needed
        assert renamed.user.name == "Patricia"
        await refused(users.UpdateUser(user_pb2.UpdateUserRequest(
            id=user.id, name="Pat", email=email, role="admin")))
        changed = await users.UpdateUser(user_pb2.UpdateUserRequest(
            id=user.id, name="Pat", email=email, password="second-password",
            current_password="first-password"))
        assert changed.user.id == user.id
        # The change ended the user's tokens, this one included (within a second, the bound
        # of a service's memo of revocations): they sign in again.
        await refused_within(lambda: users.GetUser(user_pb2.GetUserRequest(id=user.id)))
    # An admin changes another user's password without knowing it.
    await stack.users.UpdateUser(user_pb2.UpdateUserRequest(
        id=user.id, name="Pat", email=email, password="third-password"))
    await stack.users.Login(user_pb2.LoginRequest(email=email, password="third-password"))


# -- products ----------------------------------------------------------------------------------
async def test_product_writes_are_an_admins(stack: Stack) -> None:
    customer, product = await stack.customer(), await stack.product(price="2.00")
    job = tls_for(stack.settings.state_dir, "restock-job")
    for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                        (stack.token(customer), grpc.StatusCode.PERMISSION_DENIED)):
        async with channel(stack.settings.product_addrs[0], job, token=token) as target:
            products = product_pb2_grpc.ProductServiceStub(target)
            read = await products.GetProduct(product_pb2.GetProductRequest(id=product))
            assert read.product.price == "2.00"
            await refused(products.UpdateProduct(product_pb2.UpdateProductRequest(
                id=product, price="0.01")), code)
            await refused(products.DeleteProduct(product_pb2.DeleteProductRequest(id=product)),
                          code)
            await refused(products.CreateProduct(product_pb2.CreateProductRequest(
                id=unique("P"), name="Free", price="0.01", stock=1)), code)
    assert (await stack.products.GetProduct(product_pb2.GetProductRequest(id=product))
            ).product.price == "2.00"
