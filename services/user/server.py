"""Start-up of the User service: `start` serves it, `migrate` brings its schema up to date."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from portico.user.v1 import user_pb2_grpc
from services.common.db import async_engine, upgrade
from services.common.server import RunningServer, create_server
from services.common.settings import ServiceSettings
from services.user import validation
from services.user.passwords import Passwords
from services.user.servicer import SERVICE_NAME, UserServicer
from services.user.store import UserStore
from services.user.tokens import TokenIssuer, load_or_create_keys

log = logging.getLogger("portico.user")

MIGRATIONS = Path(__file__).parent / "migrations"


def _require_database(settings: ServiceSettings) -> str:
    if not settings.database_url:
        raise ValueError("the user service needs a PostgreSQL URL: set PORTICO_DATABASE_URL")
    return settings.database_url


async def start(settings: ServiceSettings, *, host: str = "127.0.0.1",
                port: int = 0) -> tuple[RunningServer, Callable[[], Awaitable[None]]]:
    """Serves UserService (with health and reflection) on host:port; port 0 picks a free one.
    Returns the running server and the cleanup to await after it stops (closes the pool)."""
    url = _require_database(settings)
    private_pem, _ = load_or_create_keys(settings)
    tokens = TokenIssuer(private_pem, issuer=settings.jwt_issuer,
                         ttl_seconds=settings.jwt_ttl_seconds)
    passwords = Passwords()
    await passwords.prepare()
    engine = async_engine(url)
    servicer = UserServicer(UserStore(engine), tokens, passwords=passwords)
    try:
        running = await create_server(
            [(user_pb2_grpc.add_UserServiceServicer_to_server, servicer, SERVICE_NAME)],
            host=host, port=port)
    except BaseException:
        await engine.dispose()
        raise

    async def cleanup() -> None:
        await engine.dispose()

    return running, cleanup


def migrate(settings: ServiceSettings) -> None:
    """Runs the users migrations (alembic upgrade head), makes sure the JWT key pair exists (so
    a gateway started next finds the public key), then ensures the first admin when
    settings.admin_email and admin_password are both set:

    - no live user has that email (in any case): an admin is created with that password;
    - one does: it is made admin if it is not already, and its password is left as it is. The
      setting is a bootstrap secret, not the source of truth: a password changed since (through
      UpdateUser) must survive every restart, so it is never overwritten silently.

    It is synchronous (as `portico migrate` wants); called where an event loop is running, it
    blocks that loop until done, which suits start-up and tests.
    """
    url = _require_database(settings)
    upgrade(url, MIGRATIONS)
    load_or_create_keys(settings)
    if settings.admin_email and settings.admin_password:
        _run_to_completion(_ensure_admin(url, settings.admin_email, settings.admin_password))


def _run_to_completion(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    # asyncio.run refuses to nest inside a running loop: give the coroutine a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()


async def _ensure_admin(url: str, email: str, password: str) -> None:
    problems = {field: problem for field, problem in (
        ("admin_email", validation.email_problem(email)),
        ("admin_password", validation.password_problem(password))) if problem}
    if problems:
        raise ValueError("invalid first admin: " + "; ".join(
            f"PORTICO_{field.upper()}: {problem}" for field, problem in problems.items()))
    engine = async_engine(url, pool_size=1)
    try:
        store = UserStore(engine)
        user, created = await store.ensure_admin(
            email=email, password_hash=await Passwords().hash(password))
    finally:
        await engine.dispose()
    log.info("admin created" if created else "admin ensured (existing password kept)",
             extra={"user_id": user.id})
