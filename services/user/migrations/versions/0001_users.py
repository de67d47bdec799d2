"""Create the users table, its live-email unique index and its listing index.

Revision ID: user_0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "user_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('customer', 'admin')", name="users_role_check"),
    )
    op.create_index("users_email_lower_live_key", "users", [sa.text("lower(email)")],
                    unique=True, postgresql_where=sa.text("deleted_at IS NULL"))
    op.create_index("users_created_at_id_live_idx", "users", ["created_at", "id"],
                    postgresql_where=sa.text("deleted_at IS NULL"))


def downgrade() -> None:
    op.drop_index("users_created_at_id_live_idx", table_name="users")
    op.drop_index("users_email_lower_live_key", table_name="users")
    op.drop_table("users")
