"""Alembic environment of the user service, configured in code by services.common.db.upgrade.

Its version table is its own (alembic_version_user), so the order service can keep its schema
in the same database without the two histories colliding.
"""

from __future__ import annotations

from services.common.db import run_migrations
from services.user.models import Base

run_migrations(version_table="alembic_version_user", metadata=Base.metadata,
               lock_key=0x706F7274_75736572)  # "portuser"
