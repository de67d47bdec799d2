"""Alembic environment of the user service, configured in code by services.common.db.upgrade.

Its version table is its own (alembic_version_user), so the order service can keep its schema
in the same database without the two histories colliding.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool, text

from services.user.models import Base

VERSION_TABLE = "alembic_version_user"
# Serialises concurrent `portico migrate` runs: the second waits, then finds nothing to do.
ADVISORY_LOCK_KEY = 0x706F7274_75736572  # "portuser"


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    config = context.config
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
        )
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": ADVISORY_LOCK_KEY})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
