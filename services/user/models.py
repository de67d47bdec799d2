"""The users table. Deletion is soft: a deleted row stays for audit but is invisible everywhere,
and its email may be registered again (the unique email index covers live rows only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, Text, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("customer", "admin")
EMAIL_INDEX = "users_email_lower_live_key"
LIST_INDEX = "users_created_at_id_live_idx"


class Base(DeclarativeBase):
    """Declarative base of the user service's tables (its own metadata, its own migrations)."""


class UserRow(Base):
    """One account; `email` is kept as given, uniqueness is on lower(email) among live rows."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Tokens of this user issued at or before this moment are revoked (deletion, role or
    # password change); Redis holds the same moment for every service to read per call.
    tokens_valid_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                                nullable=True)

    __table_args__ = (
        CheckConstraint("role IN ('customer', 'admin')", name="users_role_check"),
        Index(EMAIL_INDEX, func.lower(email), unique=True,
              postgresql_where=text("deleted_at IS NULL")),
        # ListUsers walks live rows in (created_at, id) order: keyset paging reads this index.
        Index(LIST_INDEX, created_at, id, postgresql_where=text("deleted_at IS NULL")),
    )
