"""Alembic environment of the order service: its own version table, so that it can share a
PostgreSQL database with the user service."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

VERSION_TABLE = "alembic_version_order"


def run_offline() -> None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"),
                      literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = engine_from_config(context.config.get_section(context.config.config_ini_section),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, version_table=VERSION_TABLE,
                          transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
