"""UserStore against a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.common.db import async_engine
from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.common.settings import ServiceSettings
from services.user.store import UserStore


@pytest_asyncio.fixture(scope="module")
async def store(migrated: ServiceSettings) -> AsyncIterator[UserStore]:
    engine = async_engine(migrated.database_url)
    yield UserStore(engine)
    await engine.dispose()


async def _create(store: UserStore, email: str, **overrides: str):
    values = {"name": "Some One", "email": email, "password_hash": "hash-" + email,
              "role": "customer"} | overrides
    return await store.create(**values)


async def test_create_then_get(store: UserStore) -> None:
    created = await _create(store, "Get.Me@Example.com", name="Get Me", role="admin")
    assert (created.name, created.email, created.role) == ("Get Me", "Get.Me@Example.com", "admin")
    assert created.id and created.created_at == created.updated_at
    assert await store.get(created.id) == created


async def test_get_unknown_is_not_found_with_the_resource(store: UserStore) -> None:
    with pytest.raises(NotFound) as caught:
        await store.get("nobody")
    assert caught.value.resource == ("portico.user.v1.User", "nobody")


async def test_duplicate_email_in_another_case_already_exists(store: UserStore) -> None:
    await _create(store, "dup@example.com")
    with pytest.raises(AlreadyExists):
        await _create(store, "DUP@Example.COM")


async def test_update_replaces_name_and_email_and_keeps_what_is_not_given(
        store: UserStore, sync_engine: Engine) -> None:
    user = await _create(store, "before@example.com")
    updated = await store.update(user.id, name="After", email="After@example.com")
    assert (updated.name, updated.email, updated.role) == ("After", "After@example.com", "customer")
    assert updated.created_at == user.created_at and updated.updated_at > user.updated_at
    found = await store.find_credentials("after@EXAMPLE.com")
    assert found is not None and found.password_hash == "hash-before@example.com"
    changed = await store.update(user.id, name="After", email="after@example.com",
                                 password_hash="new-hash", role="admin")
    assert changed.role == "admin"
    assert (await store.find_credentials("after@example.com")).password_hash == "new-hash"


async def test_update_to_a_taken_email_already_exists(store: UserStore) -> None:
    await _create(store, "taken@example.com")
    other = await _create(store, "free@example.com")
    with pytest.raises(AlreadyExists):
        await store.update(other.id, name="x", email="Taken@example.com")


async def test_update_of_unknown_is_not_found(store: UserStore) -> None:
    with pytest.raises(NotFound):
        await store.update("missing", name="x", email="missing@example.com")


async def test_delete_is_soft_and_hides_the_user_everywhere(
        store: UserStore, sync_engine: Engine) -> None:
    user = await _create(store, "gone@example.com")
    await store.delete(user.id)
    with pytest.raises(NotFound):
        await store.get(user.id)
    with pytest.raises(NotFound):
        await store.update(user.id, name="x", email="gone@example.com")
    with pytest.raises(NotFound):
        await store.delete(user.id)
    assert await store.find_credentials("gone@example.com") is None
    assert not await store.replace_password_hash(user.id, old_hash="hash-gone@example.com",
                                                 new_hash="x")
    with sync_engine.connect() as conn:  # kept for audit
        kept = conn.execute(text("SELECT deleted_at FROM users WHERE id = :id"),
                            {"id": user.id}).scalar_one()
    assert kept is not None
    again = await _create(store, "GONE@example.com")
    assert again.id != user.id and (await store.get(again.id)).email == "GONE@example.com"


async def test_concurrent_creates_of_one_email_let_exactly_one_win(store: UserStore) -> None:
    results = await asyncio.gather(
        *(_create(store, f"race{'@EXAMPLE.com' if i % 2 else '@example.com'}") for i in range(6)),
        return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, Exception))


async def test_a_bad_role_is_refused_by_the_database(store: UserStore) -> None:
    with pytest.raises(IntegrityError):
        await _create(store, "role@example.com", role="superuser")


async def test_replace_password_hash_only_over_the_expected_hash(store: UserStore) -> None:
    user = await _create(store, "rehash@example.com")
    assert not await store.replace_password_hash(user.id, old_hash="stale", new_hash="h2")
    assert await store.replace_password_hash(user.id, old_hash="hash-rehash@example.com",
                                             new_hash="h2")
    assert (await store.find_credentials("rehash@example.com")).password_hash == "h2"


async def test_ensure_admin_creates_then_promotes_and_keeps_the_hash(store: UserStore) -> None:
    admin, created = await store.ensure_admin(email="boss@example.com", password_hash="boss-h")
    assert created and admin.role == "admin"
    same, created = await store.ensure_admin(email="BOSS@example.com", password_hash="other")
    assert not created and same == admin
    user = await _create(store, "promote@example.com")
    promoted, created = await store.ensure_admin(email="promote@example.com", password_hash="z")
    assert not created and (promoted.id, promoted.role) == (user.id, "admin")
    assert (await store.find_credentials("promote@example.com")).password_hash \
        == "hash-promote@example.com"


async def test_concurrent_ensure_admin_makes_one_admin(store: UserStore,
                                                       sync_engine: Engine) -> None:
    await asyncio.gather(*(store.ensure_admin(email="twin@example.com", password_hash="h")
                           for _ in range(4)))
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE email = 'twin@example.com'")
                            ).scalar_one() == 1


async def test_list_pages_through_every_live_user_once_in_order(
        store: UserStore, sync_engine: Engine) -> None:
    with sync_engine.begin() as conn:  # a clean slate: ordering is checked over the whole table
        conn.execute(text("DELETE FROM users"))
    made = [await _create(store, f"page{i}@example.com") for i in range(7)]
    await store.delete(made[3].id)
    seen, token, pages = [], "", 0
    while True:
        users, token = await store.list_page(page_size=2, page_token=token)
        seen += users
        pages += 1
        if not token:
            break
    expected = [u for i, u in enumerate(made) if i != 3]
    assert [u.id for u in seen] == [u.id for u in expected]
    assert pages == 3
    assert [u.id for u in seen] == [u.id for u in sorted(seen, key=lambda u: (u.created_at, u.id))]
    everyone, last = await store.list_page(page_size=100)
    assert len(everyone) == 6 and last == ""


async def test_list_exactly_a_page_has_no_next_token(store: UserStore,
                                                     sync_engine: Engine) -> None:
    with sync_engine.begin() as conn:
        conn.execute(text("DELETE FROM users"))
    for i in range(3):
        await _create(store, f"exact{i}@example.com")
    users, token = await store.list_page(page_size=3)
    assert len(users) == 3 and token == ""


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    "not base64 at all!", "A", "x" * 600, _b64({}), _b64([]), _b64(["x", "y"]),
    _b64(["2024-01-01T00:00:00", "abc"]),  # no time zone
    _b64(["2024-01-01T00:00:00+00:00", ""]), _b64(["2024-01-01T00:00:00+00:00", 5]),
    _b64(["2024-01-01T00:00:00+00:00", "a" * 65]),
])
async def test_list_rejects_a_malformed_token(store: UserStore, token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await store.list_page(page_size=10, page_token=token)
    assert [field for field, _ in caught.value.violations] == ["page_token"]
