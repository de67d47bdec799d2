"""Settings of a service process, from PORTICO_* environment variables."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.common.addresses import check_addresses

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
    # How long the MongoDB client waits for a primary (an election, a step-down) per operation.
    mongodb_server_selection_timeout_seconds: float = Field(5.0, gt=0, le=120)
    # How long a store keeps retrying an operation that is safe to repeat while its database
    # fails over (PostgreSQL connection lost or read-only, MongoDB not primary).
    store_retry_seconds: float = Field(5.0, ge=0, le=120)
    redis_url: str | None = Field(None, description="Redis URL for cache invalidation signals")
    # standalone: redis_url is the server; cluster: a seed node of a Redis Cluster.
    redis_mode: Literal["standalone", "cluster"] = "standalone"

    user_addrs: AddressList = Field(default_factory=list)
    product_addrs: AddressList = Field(default_factory=list)

    state_dir: Path = Path(".portico")
    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwt_ttl_seconds: int = Field(3600, ge=60, le=86400)
    jwt_issuer: str = "portico"

    admin_email: str | None = None
    admin_password: str | None = None

    # Mutual TLS on every internal hop: the operator's CA bundle, this process's certificate
    # (with its spiffe://portico/<identity> URI SAN) and key; all three, or none for the
    # development PKI under state_dir/pki.
    mtls_ca_file: Path | None = None
    mtls_cert_file: Path | None = None
    mtls_key_file: Path | None = None
    # Further names this instance is reached by (the name of a dns: target, say), put in its
    # development certificate beside the address it listens on; operator certificates carry
    # their own.
    advertised_hosts: AddressList = Field(default_factory=list)
    # Bound on each Redis call made per request (revocation checks): slower counts as down.
    redis_timeout_seconds: float = Field(0.25, gt=0, le=10)

    # Abuse limits of the user service: argon2id hashes at once per instance (beyond: an
    # immediate UNAVAILABLE), and the login back-off per account after repeated failures.
    max_concurrent_hashes: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)
    login_failures_before_backoff: int = Field(5, ge=1)
    login_backoff_max_seconds: float = Field(900.0, gt=0)

    payment_processor: str = "simulated"
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    # An order still pending after this long is taken to be abandoned by a crashed instance.
    order_pending_timeout_seconds: float = Field(30.0, gt=0)
    reconcile_interval_seconds: float = Field(10.0, gt=0)
    # Deadline of a call to another service when the caller gave none.
    upstream_timeout_seconds: float = Field(5.0, gt=0)

    grace_period_seconds: float = Field(5.0, ge=0)
    # Each client connection is closed (GOAWAY) after about this long, so clients resolve
    # their dns: targets again and spread onto new instances; calls in flight then get the
    # grace to finish. 0 turns it off.
    max_connection_age_seconds: float = Field(30.0, ge=0)
    max_connection_age_grace_seconds: float = Field(30.0, ge=0)
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    _split = field_validator("user_addrs", "product_addrs", "advertised_hosts",
                             mode="before")(split_addresses)

    @field_validator("user_addrs", "product_addrs")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return check_addresses(value)

    @model_validator(mode="after")
    def _mtls_files(self) -> ServiceSettings:
        given = [self.mtls_ca_file, self.mtls_cert_file, self.mtls_key_file]
        if any(given) and not all(given):
            raise ValueError("mtls_ca_file, mtls_cert_file and mtls_key_file go together")
        return self


@functools.lru_cache
def get_settings() -> ServiceSettings:
    """The process's settings, read once on first use (never at import time)."""
    return ServiceSettings()
