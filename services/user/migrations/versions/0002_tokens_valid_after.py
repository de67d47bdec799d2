"""Add users.tokens_valid_after: the moment a user's tokens stopped being valid.

Revision ID: user_0002
Revises: user_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "user_0002"
down_revision = "user_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("tokens_valid_after", sa.DateTime(timezone=True),
                                     nullable=True))


def downgrade() -> None:
    op.drop_column("users", "tokens_valid_after")
