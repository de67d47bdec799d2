"""PostgreSQL helpers shared by the stores of the user and order services."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.tracing.stores import instrument_engine


def async_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncio engine on psycopg 3; a plain postgresql:// URL is given that driver."""
    engine = create_async_engine(
        psycopg_url(url), pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True
    )
    instrument_engine(engine)  # a span per statement while traces are on
    return engine


def psycopg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def upgrade(url: str, migrations: Path) -> None:
    """Runs `alembic upgrade head` for one service's migrations folder (its env.py keeps a
    version table of its own, so services can share a database)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", psycopg_url(url).replace("%", "%%"))
    command.upgrade(config, "head")


def run_migrations(*, version_table: str, lock_key: int, metadata=None) -> None:
    """The body of a service's alembic env.py: online migrations in one transaction that first
    takes a PostgreSQL advisory lock, so concurrent `portico migrate` runs (two instances
    starting at once) serialise, the second finding nothing to do. Offline mode writes SQL."""
    from alembic import context
    from sqlalchemy import engine_from_config, pool, text

    if context.is_offline_mode():
        context.configure(url=context.config.get_main_option("sqlalchemy.url"),
                          target_metadata=metadata, version_table=version_table,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    config = context.config
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          version_table=version_table)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            context.run_migrations()
    engine.dispose()
