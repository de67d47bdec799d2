"""Start-up of the User service: `start` serves it, `migrate` brings its schema up to date and
makes the first admin, `create_admin` makes one on purpose."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from portico.user.v1 import user_pb2_grpc
from services.common.db import async_engine, postgres_retry, upgrade
from services.common.server import ConnectionAge, RunningServer, create_server
from services.common.settings import ServiceSettings
from services.common.trust import build_trust
from services.user import access, validation
from services.user.passwords import Passwords
from services.user.revoker import Revoker
from services.user.servicer import SERVICE_NAME, UserServicer
from services.user.store import FirstAdmin, UserRecord, UserStore
from services.user.throttle import LoginThrottle
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
    trust = build_trust(settings, "user", {access.SERVICE: access.CALLERS}, host=host)
    passwords = Passwords(max_concurrent=settings.max_concurrent_hashes)
    await passwords.prepare()
    engine = async_engine(url)
    revoker = Revoker(trust.redis, token_ttl=settings.jwt_ttl_seconds)
    throttle = LoginThrottle(trust.redis, free_failures=settings.login_failures_before_backoff,
                             max_seconds=settings.login_backoff_max_seconds)
    store = UserStore(engine, retry=postgres_retry(settings.store_retry_seconds))
    servicer = UserServicer(store, tokens, passwords=passwords, revoker=revoker,
                            throttle=throttle)

    async def cleanup() -> None:
        await revoker.close()
        await trust.close()
        await engine.dispose()

    try:
        running = await create_server(
            [(user_pb2_grpc.add_UserServiceServicer_to_server, servicer, SERVICE_NAME)],
            tls=trust.tls, admission=trust.admission, host=host, port=port,
            connection_age=ConnectionAge.of(settings))
    except BaseException:
        await cleanup()
        raise
    return running, cleanup


def migrate(settings: ServiceSettings) -> None:
    """Runs the users migrations (alembic upgrade head), makes sure the JWT key pair exists (so
    a gateway started next finds the public key), then, when settings.admin_email and
    admin_password are both set, creates the first admin with them, but only while no admin
    exists. An account that already has that email is never made admin (its owner would get
    rights nobody gave them): an ERROR is logged instead, and `portico create-admin` makes an
    admin on purpose.

    It is synchronous (as `portico migrate` wants); called where an event loop is running, it
    blocks that loop until done, which suits start-up and tests.
    """
    url = _require_database(settings)
    upgrade(url, MIGRATIONS)
    load_or_create_keys(settings)
    if settings.admin_email and settings.admin_password:
        _run_to_completion(_first_admin(url, settings.admin_email, settings.admin_password))


def create_admin(settings: ServiceSettings, *, email: str, password: str,
                 name: str | None = None) -> UserRecord:
    """Makes a new admin account (`portico create-admin`); AlreadyExists when a live user has
    the email (an existing account is promoted by an admin's UpdateUser, not here)."""
    url = _require_database(settings)
    _check_admin(email, password, names=("email", "password"))
    created: list[UserRecord] = []

    async def run() -> None:
        engine = async_engine(url, pool_size=1)
        try:
            created.append(await UserStore(engine).create(
                name=name or email.partition("@")[0] or "admin", email=email,
                password_hash=await Passwords().hash(password), role="admin"))
        finally:
            await engine.dispose()

    _run_to_completion(run())
    log.info("admin created", extra={"user_id": created[0].id})
    return created[0]


def _run_to_completion(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    # asyncio.run refuses to nest inside a running loop: give the coroutine a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()


def _check_admin(email: str, password: str, *, names: tuple[str, str]) -> None:
    """ValueError naming (as `names` call them) the email and password that are not fit."""
    problems = [(name, problem) for name, problem in zip(names, (
        validation.email_problem(email), validation.password_problem(password))) if problem]
    if problems:
        raise ValueError("invalid admin: " + "; ".join(f"{n}: {p}" for n, p in problems))


async def _first_admin(url: str, email: str, password: str) -> None:
    _check_admin(email, password, names=("PORTICO_ADMIN_EMAIL", "PORTICO_ADMIN_PASSWORD"))
    engine = async_engine(url, pool_size=1)
    try:
        outcome, user = await UserStore(engine).create_first_admin(
            email=email, password_hash=await Passwords().hash(password))
    finally:
        await engine.dispose()
    if outcome is FirstAdmin.CREATED:
        log.info("first admin created", extra={"user_id": user.id})
    elif outcome is FirstAdmin.EMAIL_TAKEN:
        log.error("no first admin made: PORTICO_ADMIN_EMAIL belongs to an existing account, "
                  "which is not made admin; use `portico create-admin --email OTHER` or have "
                  "an admin change that account's role")
    else:
        log.info("an admin exists: PORTICO_ADMIN_EMAIL and PASSWORD are not used")
