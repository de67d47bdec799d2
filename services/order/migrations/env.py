"""Alembic environment of the order service: its own version table (alembic_version_order), so
that it can share a PostgreSQL database with the user service."""

from __future__ import annotations

from services.common.db import run_migrations

run_migrations(version_table="alembic_version_order", lock_key=0x706F7274_6F726472)  # "portordr"
