"""UserStore: the only code of the user service that touches PostgreSQL."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg.errors import UniqueViolation
from sqlalchemy import exists, func, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.db import postgres_retry
from services.common.errors import AlreadyExists, NotFound
from services.common.storeretry import StoreRetry, retried
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


@dataclass(frozen=True)
class TokenState:
    """What decides whether a user's token still holds, from the database alone: the user is
    live, and the moment its tokens stopped being valid (None: never)."""

    live: bool
    valid_after: float | None


class FirstAdmin(enum.Enum):
    """What making the first admin did."""

    CREATED = "created"
    ADMIN_EXISTS = "an admin exists"
    EMAIL_TAKEN = "the email belongs to an existing account"


_PUBLIC = (UserRow.id, UserRow.name, UserRow.email, UserRow.role,
           UserRow.created_at, UserRow.updated_at)
_LIVE = UserRow.deleted_at.is_(None)
_FIRST_ADMIN_LOCK = 0x706F7274_61646D6E  # "portadmn": one first-admin decision at a time


class UserStore:
    """Creates, reads, changes, soft-deletes and pages through users. Reads, and the writes
    that are safe to repeat (end_tokens only moves a moment forward), are retried while
    PostgreSQL fails over; the other writes are not (a sign-up repeated after a lost commit
    would find its own email taken), and fail as UNAVAILABLE or INTERNAL then."""

    def __init__(self, engine: AsyncEngine, *, retry: StoreRetry | None = None) -> None:
        self._engine = engine
        self._retry = retry or postgres_retry()

    async def create(self, *, name: str, email: str, password_hash: str,
                     role: str) -> UserRecord:
        """Inserts a user; AlreadyExists when a live user has this email in any case."""
        statement = insert(UserRow).values(
            id=uuid.uuid4().hex, name=name, email=email, password_hash=password_hash, role=role,
        ).returning(*_PUBLIC)
        return _record(await self._write_one(statement, email=email))

    @retried
    async def get(self, user_id: str) -> UserRecord:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_PUBLIC).where(UserRow.id == user_id, _LIVE))).first()
        if row is None:
            raise _not_found(user_id)
        return _record(row)

    async def update(self, user_id: str, *, name: str, email: str,
                     password_hash: str | None = None,
                     role: str | None = None) -> tuple[UserRecord, str]:
        """Replaces name and email, and the hash or role when given; NotFound, AlreadyExists.
        Returns the user as updated and the role it had before (read under the row lock)."""
        values: dict[str, object] = {"name": name, "email": email, "updated_at": func.now()}
        if password_hash is not None:
            values["password_hash"] = password_hash
        if role is not None:
            values["role"] = role
        old = (select(UserRow.id, UserRow.role.label("old_role"))
               .where(UserRow.id == user_id, _LIVE).with_for_update().cte("old"))
        statement = (update(UserRow).where(UserRow.id == old.c.id)
                     .values(**values).returning(*_PUBLIC, old.c.old_role))
        row = await self._write_one(statement, email=email)
        if row is None:
            raise _not_found(user_id)
        return _record(row), row.old_role

    @retried
    async def end_tokens(self, user_id: str, at: float) -> None:
        """Records that the user's tokens issued at or before `at` are revoked (deleted users
        included; the moment only ever moves forward)."""
        moment = datetime.fromtimestamp(at, UTC)
        statement = (update(UserRow).where(UserRow.id == user_id).values(
            tokens_valid_after=func.greatest(
                func.coalesce(UserRow.tokens_valid_after, moment), moment)))
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    @retried
    async def token_state(self, user_id: str) -> TokenState:
        """Whether the user is live, and since when its tokens are valid."""
        statement = select(UserRow.deleted_at, UserRow.tokens_valid_after).where(
            UserRow.id == user_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            return TokenState(False, None)
        after = row.tokens_valid_after.timestamp() if row.tokens_valid_after else None
        return TokenState(row.deleted_at is None, after)

    @retried
    async def email_taken(self, email: str, *, other_than: str | None = None) -> bool:
        """Whether a live user (other than `other_than`) has this email in any case: checked
        before a password is hashed, so a duplicate sign-up costs no hash."""
        condition = [func.lower(UserRow.email) == func.lower(email), _LIVE]
        if other_than is not None:
            condition.append(UserRow.id != other_than)
        async with self._engine.connect() as conn:
            return bool((await conn.execute(select(exists().where(*condition)))).scalar())

    @retried
    async def credentials_of(self, user_id: str) -> Credentials:
        """The live user with its hash (to check a current password); NotFound otherwise."""
        statement = select(*_PUBLIC, UserRow.password_hash).where(UserRow.id == user_id, _LIVE)
        async with self._engine.connect() as conn:
            row = (await conn.execute(statement)).first()
        if row is None:
            raise _not_found(user_id)
        return Credentials(_record(row), row.password_hash)

    async def delete(self, user_id: str) -> None:
        """Soft-deletes a live user; NotFound when there is none (already deleted included)."""
        statement = (update(UserRow).where(UserRow.id == user_id, _LIVE)
                     .values(deleted_at=func.now(), updated_at=func.now()))
        async with self._engine.begin() as conn:
            result = await conn.execute(statement)
        if result.rowcount == 0:
            raise _not_found(user_id)

    @retried
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

    @retried
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

    async def create_first_admin(self, *, email: str, password_hash: str
                                 ) -> tuple[FirstAdmin, UserRecord | None]:
        """Creates an admin with this email only when no live admin exists and no live user
        has the email; an existing account is never promoted. Under an advisory lock, so of
        several processes starting at once exactly one decides."""
        async with self._engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": _FIRST_ADMIN_LOCK})
            if (await conn.execute(select(exists().where(UserRow.role == "admin", _LIVE)))
                    ).scalar():
                return FirstAdmin.ADMIN_EXISTS, None
            taken = exists().where(func.lower(UserRow.email) == func.lower(email), _LIVE)
            if (await conn.execute(select(taken))).scalar():
                return FirstAdmin.EMAIL_TAKEN, None
            row = (await conn.execute(insert(UserRow).values(
                id=uuid.uuid4().hex, name=email.partition("@")[0] or "admin", email=email,
                password_hash=password_hash, role="admin").returning(*_PUBLIC))).first()
        return FirstAdmin.CREATED, _record(row)

    async def _write_one(self, statement, *, email: str):
        try:
            async with self._engine.begin() as conn:
                return (await conn.execute(statement)).first()
        except IntegrityError as error:
            if _is_email_conflict(error):
                raise email_taken_error(email) from None
            raise


def email_taken_error(email: str) -> AlreadyExists:
    """What a sign-up or an email change to a live user's email answers."""
    return AlreadyExists("a user with this email already exists", reason="EMAIL_TAKEN",
                         resource=(RESOURCE, email))


def _is_email_conflict(error: IntegrityError) -> bool:
    cause = error.orig
    return isinstance(cause, UniqueViolation) and cause.diag.constraint_name == EMAIL_INDEX


def _not_found(user_id: str) -> NotFound:
    return NotFound(f"user {user_id!r} not found", resource=(RESOURCE, user_id))


def _record(row) -> UserRecord:
    return UserRecord(row.id, row.name, row.email, row.role, row.created_at, row.updated_at)
