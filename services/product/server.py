"""Starts the Product service: MongoDB store, cache signals, gRPC server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from portico.product.v1 import product_pb2, product_pb2_grpc
from services.common.invalidation import CacheSignals
from services.common.server import ConnectionAge, RunningServer, create_server
from services.common.settings import ServiceSettings
from services.common.trust import build_trust
from services.product import access
from services.product import store as product_store
from services.product.servicer import ProductServicer

SERVICE_NAME = product_pb2.DESCRIPTOR.services_by_name["ProductService"].full_name


def _mongo(settings: ServiceSettings) -> tuple[str, str]:
    if not settings.mongodb_uri:
        raise ValueError("the product service needs PORTICO_MONGODB_URI")
    if not settings.mongodb_database:
        raise ValueError("the product service needs PORTICO_MONGODB_DATABASE")
    return settings.mongodb_uri, settings.mongodb_database


async def start(settings: ServiceSettings, *, host: str = "127.0.0.1", port: int = 0
                ) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    """Serves ProductService on host:port (0: any free port); returns the server and the
    cleanup that closes the MongoDB client and the Redis connection after the server stops."""
    uri, database = _mongo(settings)
    trust = build_trust(settings, "product", {access.SERVICE: access.CALLERS}, host=host)
    store = product_store.ProductStore.connect(
        uri, database,
        server_selection_timeout=settings.mongodb_server_selection_timeout_seconds,
        retry_seconds=settings.store_retry_seconds)
    signals = CacheSignals(settings.redis_url, mode=settings.redis_mode)

    async def cleanup() -> None:
        await signals.close()
        await trust.close()
        await store.close()

    try:
        await store.create_indexes()
        running = await create_server(
            [(product_pb2_grpc.add_ProductServiceServicer_to_server,
              ProductServicer(store, signals), SERVICE_NAME)],
            tls=trust.tls, admission=trust.admission, host=host, port=port,
            connection_age=ConnectionAge.of(settings))
    except BaseException:
        await cleanup()
        raise
    return running, cleanup


def migrate(settings: ServiceSettings) -> None:
    """Creates the collections' indexes (idempotent)."""
    product_store.create_indexes(*_mongo(settings))
