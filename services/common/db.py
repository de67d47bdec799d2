"""PostgreSQL helpers shared by the stores of the user and order services."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncio engine on psycopg 3; a plain postgresql:// URL is given that driver."""
    return create_async_engine(
        psycopg_url(url), pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True
    )


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
