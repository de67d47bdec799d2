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
from services.user.store import FirstAdmin, TokenState, UserStore


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
    updated, old_role = await store.update(user.id, name="After", email="After@example.com")
    assert old_role == "customer"
    assert (updated.name, updated.email, updated.role) == ("After", "After@example.com", "customer")
    assert updated.created_at == user.created_at and updated.updated_at > user.updated_at
    found = await store.find_credentials("after@EXAMPLE.com")
    assert found is not None and found.password_hash == "hash-before@example.com"
    changed, old_role = await store.update(user.id, name="After", email="after@example.com",
                                           password_hash="new-hash", role="admin")
    assert (changed.role, old_role) == ("admin", "customer")
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


def _no_users(sync_engine: Engine) -> None:
    with sync_engine.begin() as conn:
        conn.execute(text("DELETE FROM users"))


def _admins(sync_engine: Engine) -> list[str]:
    with sync_engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT email FROM users WHERE role = 'admin' AND deleted_at IS NULL")).scalars())


async def test_the_first_admin_is_made_only_while_no_admin_exists(
        store: UserStore, sync_engine: Engine) -> None:
    _no_users(sync_engine)
    outcome, admin = await store.create_first_admin(email="boss@example.com",
                                                    password_hash="boss-h")
    assert outcome is FirstAdmin.CREATED and admin.role == "admin"
    outcome, nobody = await store.create_first_admin(email="second@example.com",
                                                     password_hash="other")
    assert (outcome, nobody) == (FirstAdmin.ADMIN_EXISTS, None)
    assert _admins(sync_engine) == ["boss@example.com"]


async def test_the_first_admin_never_promotes_an_existing_account(
        store: UserStore, sync_engine: Engine) -> None:
    """Whoever signed up first with the bootstrap email must not become admin by it."""
    _no_users(sync_engine)
    user = await _create(store, "squatter@example.com")
    outcome, nobody = await store.create_first_admin(email="SQUATTER@example.com",
                                                     password_hash="z")
    assert (outcome, nobody) == (FirstAdmin.EMAIL_TAKEN, None)
    assert (await store.get(user.id)).role == "customer"
    assert _admins(sync_engine) == []


async def test_concurrent_first_admins_make_one(store: UserStore, sync_engine: Engine) -> None:
    _no_users(sync_engine)
    outcomes = await asyncio.gather(*(store.create_first_admin(
        email=f"twin{i}@example.com", password_hash="h") for i in range(4)))
    assert sorted(outcome.value for outcome, _ in outcomes) == sorted(
        [FirstAdmin.CREATED.value] + [FirstAdmin.ADMIN_EXISTS.value] * 3)
    assert len(_admins(sync_engine)) == 1


async def test_ended_tokens_move_only_forward_and_outlive_deletion(store: UserStore) -> None:
    user = await _create(store, "ended@example.com")
    assert await store.token_state(user.id) == TokenState(True, None)
    await store.end_tokens(user.id, 2_000_000_000.25)
    await store.end_tokens(user.id, 1_000_000_000.0)   # a late, older write changes nothing
    assert await store.token_state(user.id) == TokenState(True, 2_000_000_000.25)
    await store.delete(user.id)
    assert await store.token_state(user.id) == TokenState(False, 2_000_000_000.25)
    assert await store.token_state("no-such-user") == TokenState(False, None)


async def test_email_taken_looks_at_live_users_in_any_case(store: UserStore) -> None:
    user = await _create(store, "Busy@example.com")
    assert await store.email_taken("busy@EXAMPLE.com")
    assert not await store.email_taken("busy@example.com", other_than=user.id)
    await store.delete(user.id)
    assert not await store.email_taken("busy@example.com")


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
