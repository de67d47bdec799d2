"""The stores' failover pieces without a database: the bounded retry, what counts as transient
for PostgreSQL and MongoDB, and the PostgreSQL URLs of several hosts."""

from __future__ import annotations

import psycopg
import pytest
from pymongo.errors import DuplicateKeyError, NotPrimaryError, OperationFailure
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from services.common.db import is_transient, psycopg_url
from services.common.errors import Unavailable
from services.common.storeretry import StoreRetry
from services.product.store_failover import is_transient as mongo_transient


class Flaky:
    """Fails with `error` the first `failures` times, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


class Transient(Exception):
    pass


def retry(seconds: float = 2.0) -> StoreRetry:
    return StoreRetry(lambda e: isinstance(e, Transient), seconds=seconds, database="test")


async def test_transient_failures_are_retried() -> None:
    operation = Flaky(3, Transient())
    assert await retry().run(operation) == "done" and operation.calls == 4


async def test_other_failures_are_not() -> None:
    operation = Flaky(1, KeyError("no"))
    with pytest.raises(KeyError):
        await retry().run(operation)
    assert operation.calls == 1


async def test_past_the_bound_the_failure_is_unavailable() -> None:
    operation = Flaky(1000, Transient())
    with pytest.raises(Unavailable) as failure:
        await retry(seconds=0.3).run(operation)
    assert failure.value.reason == "DATABASE_UNAVAILABLE" and 2 <= operation.calls < 20
    with pytest.raises(Unavailable):
        await retry(seconds=0).run(Flaky(1, Transient()))


def _dbapi(kind, orig: Exception, **extra):
    return kind("SELECT 1", {}, orig, **extra)


def _with_state(cls, sqlstate: str) -> Exception:
    error = cls("as told")
    error.__class__ = type(cls.__name__, (cls,), {"sqlstate": sqlstate})
    return error


@pytest.mark.parametrize("error, transient", [
    (_dbapi(OperationalError, psycopg.OperationalError("connection refused")), True),
    (_dbapi(OperationalError, _with_state(psycopg.OperationalError, "57P01")), True),
    (_dbapi(OperationalError, _with_state(psycopg.OperationalError, "08006")), True),
    (_dbapi(OperationalError, _with_state(psycopg.InternalError, "25006")), True),
    (_dbapi(OperationalError, _with_state(psycopg.OperationalError, "57014")), False),
    (_dbapi(OperationalError, Exception("x"), connection_invalidated=True), True),
    (_dbapi(IntegrityError, _with_state(psycopg.IntegrityError, "23505")), False),
    (ValueError("not the database's"), False),
])
def test_what_postgres_failures_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize("error, transient", [
    (NotPrimaryError("not primary"), True),
    (OperationFailure("stepped down", code=189), True),
    (OperationFailure("bad", code=2), False),
    (DuplicateKeyError("dup", code=11000), False),
])
def test_what_mongodb_failures_are_transient(error: Exception, transient: bool) -> None:
    assert mongo_transient(error) is transient


@pytest.mark.parametrize("url, hosts, ports", [
    ("postgresql://u:p@a:5432,b:5433/db?target_session_attrs=read-write", "a,b", "5432,5433"),
    ("postgresql://u:p@a,b/db", "a,b", ","),
    ("host=a,b port=5432,5433 dbname=db user=u password=p target_session_attrs=read-write",
     "a,b", "5432,5433"),
])
def test_urls_of_several_hosts(url: str, hosts: str, ports: str) -> None:
    _, params = PGDialect_psycopg().create_connect_args(make_url(psycopg_url(url)))
    assert (params["host"], params["port"], params["dbname"], params["user"],
            params["password"]) == (hosts, ports, "db", "u", "p")
    assert params.get("target_session_attrs", "read-write") == "read-write"


def test_a_url_of_one_host_is_unchanged_but_for_the_driver() -> None:
    assert psycopg_url("postgresql://u:p@h:1/db?sslmode=require") == \
        "postgresql+psycopg://u:p@h:1/db?sslmode=require"
