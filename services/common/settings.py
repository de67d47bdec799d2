"""Settings of a service process, from PORTICO_* environment variables."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

AddressList = Annotated[list[str], NoDecode]


def split_addresses(value: object) -> object:
    """Accepts "host:port,host:port" (the documented form) as well as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServiceSettings(BaseSettings):
    """Everything a User, Product or Order service process can be told, validated at start-up."""

    model_config = SettingsConfigDict(env_prefix="PORTICO_", extra="ignore")

    database_url: str | None = Field(None, description="PostgreSQL URL (user and order services)")
    mongodb_uri: str | None = Field(None, description="MongoDB URI (product service)")
    mongodb_database: str = "portico"
    redis_url: str | None = Field(None, description="Redis URL for cache invalidation signals")

    user_addrs: AddressList = Field(default_factory=list)
    product_addrs: AddressList = Field(default_factory=list)

    state_dir: Path = Path(".portico")
    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwt_ttl_seconds: int = Field(3600, ge=60, le=86400)
    jwt_issuer: str = "portico"

    admin_email: str | None = None
    admin_password: str | None = None

    payment_processor: str = "simulated"
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    # An order still pending after this long is taken to be abandoned by a crashed instance.
    order_pending_timeout_seconds: float = Field(30.0, gt=0)
    reconcile_interval_seconds: float = Field(10.0, gt=0)
    # Deadline of a call to another service when the caller gave none.
    upstream_timeout_seconds: float = Field(5.0, gt=0)

    grace_period_seconds: float = Field(5.0, ge=0)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    _split = field_validator("user_addrs", "product_addrs", mode="before")(split_addresses)


@functools.lru_cache
def get_settings() -> ServiceSettings:
    """The process's settings, read once on first use (never at import time)."""
    return ServiceSettings()
