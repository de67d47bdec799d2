"""Start-up of an Order service instance: wiring, the reconciler task, and migrations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from portico.order.v1 import order_pb2_grpc
from portico.product.v1 import product_pb2_grpc
from portico.user.v1 import user_pb2_grpc
from services.common.clients import service_channel
from services.common.db import async_engine, postgres_retry, upgrade
from services.common.pki import TlsMaterial, material
from services.common.server import ConnectionAge, RunningServer, create_server
from services.common.settings import ServiceSettings
from services.common.trust import build_trust
from services.order import access
from services.order.lifecycle import OrderLifecycle
from services.order.payments import ProcessorDeps, payment_processor
from services.order.placement import OrderPlacement
from services.order.reconciler import Reconciler
from services.order.servicer import SERVICE_NAME, OrderServicer
from services.order.settlement import Settlement
from services.order.store import OrderStore
from services.order.upstream import PRODUCT_SERVICE, USER_SERVICE, StockKeeper, UserDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class OrderComponents:
    """The parts of one instance, wired from settings (tests drive them directly too)."""

    store: OrderStore
    placement: OrderPlacement
    lifecycle: OrderLifecycle
    settlement: Settlement
    reconciler: Reconciler
    close: Callable[[], Awaitable[None]]


def build(settings: ServiceSettings, tls: TlsMaterial | None = None) -> OrderComponents:
    """Everything an instance needs; ValueError names a missing or bad setting. Its calls to
    the user and product services show `tls`'s certificate (default: one of the order
    identity)."""
    if not settings.database_url:
        raise ValueError("the order service needs PORTICO_DATABASE_URL")
    if not settings.user_addrs or not settings.product_addrs:
        raise ValueError("the order service needs PORTICO_USER_ADDRS and PORTICO_PRODUCT_ADDRS")
    tls = tls or material(settings, "order")
    user_channel = service_channel(settings.user_addrs, USER_SERVICE, tls)
    product_channel = service_channel(settings.product_addrs, PRODUCT_SERVICE, tls)
    engine = async_engine(settings.database_url)
    timeout = settings.upstream_timeout_seconds
    store = OrderStore(engine, retry=postgres_retry(settings.store_retry_seconds))
    payments = payment_processor(settings.payment_processor,
                                 ProcessorDeps(settings=settings, engine=engine))
    stock = StockKeeper(product_pb2_grpc.ProductServiceStub(product_channel), timeout=timeout)
    users = UserDirectory(user_pb2_grpc.UserServiceStub(user_channel), timeout=timeout)
    settlement = Settlement(store=store, stock=stock, payments=payments)

    async def close() -> None:
        await user_channel.close()
        await product_channel.close()
        await engine.dispose()

    return OrderComponents(
        store=store,
        placement=OrderPlacement(store=store, users=users, stock=stock, payments=payments,
                                 settlement=settlement, currency=settings.currency,
                                 replay_wait=settings.order_pending_timeout_seconds),
        lifecycle=OrderLifecycle(store=store, settlement=settlement),
        settlement=settlement,
        reconciler=Reconciler(store=store, settlement=settlement,
                              pending_timeout=settings.order_pending_timeout_seconds,
                              interval=settings.reconcile_interval_seconds),
        close=close,
    )


async def start(settings: ServiceSettings, *, host: str = "127.0.0.1",
                port: int = 0) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    """Serves OrderService on host:port (0: any free port) and starts the reconciler."""
    trust = build_trust(settings, "order", {access.SERVICE: access.CALLERS}, host=host)
    parts = build(settings, trust.tls)
    servicer = OrderServicer(store=parts.store, placement=parts.placement,
                             lifecycle=parts.lifecycle)
    try:
        running = await create_server(
            [(order_pb2_grpc.add_OrderServiceServicer_to_server, servicer, SERVICE_NAME)],
            tls=trust.tls, admission=trust.admission, host=host, port=port,
            connection_age=ConnectionAge.of(settings))
    except BaseException:
        await parts.close()
        await trust.close()
        raise
    parts.reconciler.start()

    async def cleanup() -> None:
        await parts.reconciler.stop()
        await parts.close()
        await trust.close()

    return running, cleanup


def migrate(settings: ServiceSettings) -> None:
    """Brings the order tables (and the simulated processor's ledger) up to date."""
    if not settings.database_url:
        raise ValueError("the order service needs PORTICO_DATABASE_URL")
    upgrade(settings.database_url, MIGRATIONS)
