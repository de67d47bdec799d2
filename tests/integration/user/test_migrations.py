"""The users migrations, run from an empty database, and the first admin `migrate` ensures."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from services.common.errors import AlreadyExists
from services.common.settings import ServiceSettings
from services.user import server
from services.user.models import Base
from services.user.passwords import Passwords


def test_migrate_creates_the_schema_from_an_empty_database(
        user_settings: ServiceSettings, sync_engine: Engine) -> None:
    assert "users" not in inspect(sync_engine).get_table_names()
    server.migrate(user_settings)
    tables = inspect(sync_engine).get_table_names()
    assert {"users", "alembic_version_user"} <= set(tables)
    assert "alembic_version" not in tables  # the name is left to nobody: each service has its own
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_user")).scalar_one() \
            == "user_0002"


def test_migrate_again_changes_nothing(user_settings: ServiceSettings,
                                       sync_engine: Engine) -> None:
    server.migrate(user_settings)
    server.migrate(user_settings)
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version_user")).scalar_one() == 1


def test_the_migrated_schema_matches_the_models(migrated: ServiceSettings,
                                                sync_engine: Engine) -> None:
    with sync_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": "alembic_version_user"})
        assert compare_metadata(context, Base.metadata) == []


def test_the_indexes_are_partial_on_live_rows(migrated: ServiceSettings,
                                              sync_engine: Engine) -> None:
    with sync_engine.connect() as conn:
        rows = dict(conn.execute(text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'users'")).all())
    assert "UNIQUE" in rows["users_email_lower_live_key"]
    assert "lower(email)" in rows["users_email_lower_live_key"]
    assert "WHERE (deleted_at IS NULL)" in rows["users_email_lower_live_key"]
    assert "(created_at, id)" in rows["users_created_at_id_live_idx"]


def test_the_role_is_constrained(migrated: ServiceSettings, sync_engine: Engine) -> None:
    with pytest.raises(Exception, match="users_role_check"), sync_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, email, password_hash, role) "
                          "VALUES ('x', 'x', 'x@example.com', 'h', 'root')"))


def _row(sync_engine: Engine, email: str):
    with sync_engine.connect() as conn:
        return conn.execute(text(
            "SELECT id, role, password_hash, name FROM users "
            "WHERE lower(email) = lower(:e) AND deleted_at IS NULL"), {"e": email}).one()


def _no_users(sync_engine: Engine) -> None:
    with sync_engine.begin() as conn:
        conn.execute(text("DELETE FROM users"))


async def test_migrate_creates_the_first_admin_when_there_is_no_admin(
        migrated: ServiceSettings, sync_engine: Engine) -> None:
    _no_users(sync_engine)
    settings = migrated.model_copy(update={
        "admin_email": "Root@Example.com", "admin_password": "first-admin-pass"})
    server.migrate(settings)
    row = _row(sync_engine, "root@example.com")
    assert row.role == "admin"
    assert await Passwords().verify(row.password_hash, "first-admin-pass")
    server.migrate(settings.model_copy(update={"admin_password": "another-password"}))
    again = _row(sync_engine, "root@example.com")
    assert (again.id, again.password_hash) == (row.id, row.password_hash)


async def test_migrate_makes_no_first_admin_when_an_admin_exists(
        migrated: ServiceSettings, sync_engine: Engine) -> None:
    _no_users(sync_engine)
    with sync_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, email, password_hash, role) "
                          "VALUES ('u-boss', 'Boss', 'boss@example.com', 'h', 'admin')"))
    server.migrate(migrated.model_copy(update={
        "admin_email": "another-root@example.com", "admin_password": "first-admin-pass"}))
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT email FROM users WHERE role = 'admin'")
                            ).scalars().all() == ["boss@example.com"]


async def test_migrate_never_promotes_an_existing_account_and_says_so(
        migrated: ServiceSettings, sync_engine: Engine,
        caplog: pytest.LogCaptureFixture) -> None:
    """Whoever signed up with the bootstrap email first must not become admin by it: the
    account keeps its role and password, no admin is made, and an ERROR says why."""
    _no_users(sync_engine)
    passwords = Passwords()
    with sync_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, name, email, password_hash, role) "
            "VALUES ('u-existing', 'Ann', 'ann@example.com', :h, 'customer')"),
            {"h": await passwords.hash("ann-own-password")})
    with caplog.at_level(logging.ERROR, logger="portico.user"):
        server.migrate(migrated.model_copy(update={
            "admin_email": "ANN@example.com", "admin_password": "bootstrap-password"}))
    row = _row(sync_engine, "ann@example.com")
    assert (row.id, row.role, row.name) == ("u-existing", "customer", "Ann")
    assert await passwords.verify(row.password_hash, "ann-own-password")
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE role = 'admin'")
                            ).scalar_one() == 0
    assert any(r.levelno == logging.ERROR and "PORTICO_ADMIN_EMAIL" in r.getMessage()
               for r in caplog.records)


def test_create_admin_makes_an_admin_on_purpose_but_never_over_an_account(
        migrated: ServiceSettings, sync_engine: Engine) -> None:
    made = server.create_admin(migrated, email="ops@example.com", password="ops-password-1")
    assert _row(sync_engine, "ops@example.com").role == "admin" and made.role == "admin"
    with pytest.raises(AlreadyExists):
        server.create_admin(migrated, email="OPS@example.com", password="ops-password-2")


def test_migrate_without_both_admin_settings_creates_no_admin(
        migrated: ServiceSettings, sync_engine: Engine) -> None:
    server.migrate(migrated.model_copy(update={"admin_email": "lonely@example.com"}))
    with sync_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE email = 'lonely@example.com'")
                            ).scalar_one() == 0


@pytest.mark.parametrize(("email", "password", "named"), [
    ("not-an-email", "long-enough-password", "PORTICO_ADMIN_EMAIL"),
    ("boss@example.com", "short", "PORTICO_ADMIN_PASSWORD"),
])
def test_migrate_rejects_a_bad_first_admin(migrated: ServiceSettings, email: str,
                                           password: str, named: str) -> None:
    settings = migrated.model_copy(update={"admin_email": email, "admin_password": password})
    with pytest.raises(ValueError, match=named):
        server.migrate(settings)


async def test_start_and_migrate_need_a_database_url(tmp_path) -> None:
    settings = ServiceSettings(database_url=None, state_dir=tmp_path)
    with pytest.raises(ValueError, match="PORTICO_DATABASE_URL"):
        server.migrate(settings)
    with pytest.raises(ValueError, match="PORTICO_DATABASE_URL"):
        await server.start(settings)


def test_the_create_admin_command(migrated: ServiceSettings, sync_engine: Engine,
                                  tmp_path) -> None:
    """`portico create-admin --email E` reads the password from stdin; an email in use is
    refused with a message, and nothing changes."""
    env = {**os.environ, "PORTICO_DATABASE_URL": migrated.database_url,
           "PORTICO_STATE_DIR": str(tmp_path), "PORTICO_LOG_LEVEL": "WARNING"}
    env.pop("PORTICO_ADMIN_PASSWORD", None)
    command = [sys.executable, "-m", "services.cli", "create-admin", "--email",
               "night-ops@example.com"]
    made = subprocess.run(command, input="night-ops-password\n", env=env, capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "night-ops@example.com" in made.stdout
    row = _row(sync_engine, "night-ops@example.com")
    assert row.role == "admin"
    again = subprocess.run(command, input="another-password\n", env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert _row(sync_engine, "night-ops@example.com").password_hash == row.password_hash
