"""UserStore: the only code of the user service that touches PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from psycopg.errors import UniqueViolation
from sqlalchemy import func, insert, literal_column, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import AlreadyExists, NotFound
from services.user import paging
from services.user.models import EMAIL_INDEX, UserRow

RESOURCE = "portico.user.v1.User"


@dataclass(frozen=True)
class UserRecord:
    """A live user as the rest of the service sees it: never the password hash."""

    id: str
    name: str
    email: str
    role: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Credentials:
    """What login needs: the user and its stored hash (never leaves the service)."""

    user: UserRecord
    password_hash: str


_PUBLIC = (UserRow.id, UserRow.name, UserRow.email, UserRow.role,
           UserRow.created_at, UserRow.updated_at)
_LIVE = UserRow.deleted_at.is_(None)
# In RETURNING of an upsert, xmax = 0 only for a row this statement inserted.
_INSERTED = literal_column("(users.xmax = 0)").label("inserted")


class UserStore:
    """Creates, reads, changes, soft-deletes and pages through users."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, *, name: str, email: str, password_hash: str,
                     role: str) -> UserRecord:
        """Inserts a user; AlreadyExists when a live user has this email in any case."""
        statement = insert(UserRow).values(
            id=uuid.uuid4().hex, name=name, email=email, password_hash=password_hash, role=role,
        ).returning(*_PUBLIC)
        return _record(await self._write_one(statement, email=email))

    async def get(self, user_id: str) -> UserRecord:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_PUBLIC).where(UserRow.id == user_id, _LIVE))).first()
        if row is None:
            raise _not_found(user_id)
        return _record(row)

    async def update(self, user_id: str, *, name: str, email: str,
                     password_hash: str | None = None, role: str | None = None) -> UserRecord:
        """Replaces name and email, and the hash or role when given; NotFound, AlreadyExists."""
        values: dict[str, object] = {"name": name, "email": email, "updated_at": func.now()}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if role is not None:
            values["role"] = role
        statement = (update(UserRow).where(UserRow.id == user_id, _LIVE)
                     .values(**values).returning(*_PUBLIC))
        row = await self._write_one(statement, email=email)
        if row is None:
            raise _not_found(user_id)
        return _record(row)

    async def delete(self, user_id: str) -> None:
        """Soft-deletes a live user; NotFound when there is none (already deleted included)."""
        statement = (update(UserRow).where(UserRow.id == user_id, _LIVE)
                     .values(deleted_at=func.now(), updated_at=func.now()))
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        if result.rowcount == 0:
            raise _not_found(user_id)

    async def list_page(self, *, page_size: int,
                        page_token: str = "") -> tuple[list[UserRecord], str]:
        """One page of live users, oldest first, and the token of the next page ("" at the end).

        Keyset paging on (created_at, id): each page is one index range scan, however deep.
        """
        statement = select(*_PUBLIC).where(_LIVE)
        if page_token:
            after = paging.decode(page_token)
            statement = statement.where(
                tuple_(UserRow.created_at, UserRow.id) > tuple_(after.created_at, after.id))
        statement = statement.order_by(UserRow.created_at, UserRow.id).limit(page_size + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        users = [_record(row) for row in rows[:page_size]]
        if len(rows) <= page_size:
            return users, ""
        last = users[-1]
        return users, paging.encode(paging.Cursor(last.created_at, last.id))

    async def find_credentials(self, email: str) -> Credentials | None:
        """The live user with this email in any case, with its hash; None when there is none."""
        statement = select(*_PUBLIC, UserRow.password_hash).where(
            func.lower(UserRow.email) == func.lower(email), _LIVE)
        async with self._engine.connect() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            return None
        return Credentials(_record(row), row.password_hash)

    async def replace_password_hash(self, user_id: str, *, old_hash: str, new_hash: str) -> bool:
        """Swaps in a rehashed password only if the hash is still `old_hash`, so a rehash on
        login never undoes a password change made meanwhile. True when it was replaced."""
        statement = (update(UserRow)
                     .where(UserRow.id == user_id, UserRow.password_hash == old_hash, _LIVE)
                     .values(password_hash=new_hash))
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        return result.rowcount == 1

    async def ensure_admin(self, *, email: str, password_hash: str) -> tuple[UserRecord, bool]:
        """Makes sure a live admin with this email exists, in one statement that is safe when two
        processes run it at once. A new admin gets `password_hash`; an existing user with the
        email is made admin and keeps its password. Returns the user and whether it was created.
        """
        statement = pg_insert(UserRow).values(
            id=uuid.uuid4().hex, name=email.partition("@")[0] or "admin", email=email,
            password_hash=password_hash, role="admin",
        )
        statement = statement.on_conflict_do_update(
            index_elements=[func.lower(UserRow.email)],
            index_where=_LIVE,
            set_={"role": "admin", "updated_at": func.now()},
            where=UserRow.role != "admin",
        ).returning(*_PUBLIC, _INSERTED)
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:  # already an admin: the conditional DO UPDATE touched nothing
            found = await self.find_credentials(email)
            if found is None:
                raise RuntimeError("admin vanished while being ensured")
            return found.user, False
        return _record(row), bool(row.inserted)

    async def _write_one(self, statement, *, email: str):
        try:
            async with self._engine.begin() as conn:
                return (await conn.execute(statement)).first()
        except IntegrityError as error:
            if _is_email_conflict(error):
                raise AlreadyExists("a user with this email already exists",
                                    reason="EMAIL_TAKEN",
                                    resource=(RESOURCE, email)) from None
            raise


def _is_email_conflict(error: IntegrityError) -> bool:
    cause = error.orig
    return isinstance(cause, UniqueViolation) and cause.diag.constraint_name == EMAIL_INDEX


def _not_found(user_id: str) -> NotFound:
    return NotFound(f"user {user_id!r} not found", resource=(RESOURCE, user_id))


def _record(row) -> UserRecord:
    return UserRecord(row.id, row.name, row.email, row.role, row.created_at, row.updated_at)
