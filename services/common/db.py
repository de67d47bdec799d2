"""PostgreSQL helpers shared by the stores of the user and order services: the engine, its URL
(one host or several, for failover), what counts as a transient failure, and migrations."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg
from alembic import command
from alembic.config import Config
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.common.storeretry import StoreRetry
from services.common.tracing.stores import instrument_engine

DEFAULT_RETRY_SECONDS = 5.0
# SQLSTATEs of a server going away or not (yet) taking writes: a failover in progress.
_FAILOVER_STATES = {
    "25006",   # read_only_sql_transaction: a standby, or a primary being demoted
    "57P01",   # admin_shutdown
    "57P02",   # crash_shutdown
    "57P03",   # cannot_connect_now: starting up, or shutting down
}


def async_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncio engine on psycopg 3; a plain postgresql:// URL is given that driver.
    pool_pre_ping checks a pooled connection before handing it out, so connections to a server
    that went away are dropped rather than failing a request (SQLAlchemy also empties the pool
    when one of them reports a disconnect)."""
    engine = create_async_engine(
        psycopg_url(url), pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True
    )
    instrument_engine(engine)  # a span per statement while traces are on
    return engine


def psycopg_url(url: str) -> str:
    """`url` as SQLAlchemy with psycopg reads it. Besides postgresql://user:pw@host:port/db, a
    URL with several hosts (postgresql://u:p@a:5432,b:5432/db?target_session_attrs=read-write)
    and a libpq keyword string ("host=a,b port=5432 dbname=portico user=..."): libpq tries the
    hosts in turn and, with target_session_attrs=read-write, takes the one that is primary."""
    if "://" not in url:
        return _from_keywords(url)
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        scheme = "postgresql+psycopg"
    netloc, tail = _split_netloc(rest)
    userinfo, at, hosts = netloc.rpartition("@")
    if "," not in hosts:
        return f"{scheme}://{rest}"
    # SQLAlchemy takes several hosts as ?host=a:5432&host=b:5432, not in the authority.
    path, question, query = tail.partition("?")
    params = "&".join(f"host={quote(host, safe=':[]')}" for host in hosts.split(",") if host)
    return f"{scheme}://{userinfo}{at}{path or '/'}?{params}{'&' + query if query else ''}"


def _split_netloc(rest: str) -> tuple[str, str]:
    ends = [index for index in (rest.find("/"), rest.find("?")) if index >= 0]
    end = min(ends) if ends else len(rest)
    return rest[:end], rest[end:]


def _from_keywords(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    hosts = str(params.pop("host", "")).split(",")
    ports = str(params.pop("port", "")).split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    query = {key: str(value) for key, value in params.items()
             if key not in ("user", "password", "dbname")}
    query["host"] = [f"{h}:{p}" if p else h for h, p in zip(hosts, ports, strict=True) if h]
    return URL.create("postgresql+psycopg", username=params.get("user"),
                      password=params.get("password"), database=params.get("dbname"),
                      query=query).render_as_string(hide_password=False)


def is_transient(error: BaseException) -> bool:
    """Whether `error` says the server went away or does not take writes (a failover), as
    opposed to anything about the statement itself."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    state = getattr(error.orig, "sqlstate", None)
    if state:
        return state in _FAILOVER_STATES or state.startswith("08")   # class 08: connection
    # No SQLSTATE: the connection failed or broke on the client's side.
    return isinstance(error.orig, (psycopg.OperationalError, psycopg.InterfaceError))


def postgres_retry(seconds: float = DEFAULT_RETRY_SECONDS) -> StoreRetry:
    """The retry of PostgreSQL operations safe to repeat (services/common/storeretry.py)."""
    return StoreRetry(is_transient, seconds=seconds, database="PostgreSQL")


def upgrade(url: str, migrations: Path) -> None:
    """Runs `alembic upgrade head` for one service's migrations folder (its env.py keeps a
    version table of its own, so services can share a database)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", psycopg_url(url).replace("%", "%%"))
    command.upgrade(config, "head")
def run_migrations(*, version_table: str, lock_key: int, metadata=None) -> None:
    """The body of a service's alembic env.py: online migrations in one transaction that first
    takes a PostgreSQL advisory lock, so concurrent `portico migrate` runs (two instances
    starting at once) serialise, the second finding nothing to do. Offline mode writes SQL."""
    from alembic import context
    from sqlalchemy import engine_from_config, pool, text

    if context.is_offline_mode():
        context.configure(url=context.config.get_main_option("sqlalchemy.url"),
                          target_metadata=metadata, version_table=version_table,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    config = context.config
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          version_table=version_table)
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            context.run_migrations()
    engine.dispose()
