"""Settings of a gateway process, from PORTICO_* environment variables, validated at start-up."""

from __future__ import annotations

import functools
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.common.addresses import check_addresses
from services.common.settings import AddressList, split_addresses


class GatewaySettings(BaseSettings):
    """Everything the gateway can be told. Only the app factory reads it; components get plain
    values through their constructors."""

    model_config = SettingsConfigDict(env_prefix="PORTICO_", extra="ignore")

    user_addrs: AddressList = Field(default_factory=lambda: ["127.0.0.1:50051"])
    product_addrs: AddressList = Field(default_factory=lambda: ["127.0.0.1:50061"])
    order_addrs: AddressList = Field(default_factory=lambda: ["127.0.0.1:50071"])
    redis_url: str = "redis://127.0.0.1:6379/0"
    # standalone: redis_url is the server; cluster: a seed node of a Redis Cluster.
    redis_mode: Literal["standalone", "cluster"] = "standalone"
    # Bounds every Redis call of the edge policies: a slower Redis counts as down (the
    # policies then fall back on their own, see gateway/policies.py).
    redis_timeout_seconds: float = Field(0.25, gt=0, le=10)

    # Sign-in: the gateway holds the public key only.
    state_dir: Path = Path(".portico")
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = "portico"

    # Upstream calls.
    upstream_timeout_seconds: float = Field(5.0, gt=0, le=300)
    # A dns: target is resolved again this often (and at once when an instance's health
    # watch breaks); each lookup is bounded by the timeout.
    discovery_interval_seconds: float = Field(2.0, gt=0, le=300)
    discovery_timeout_seconds: float = Field(1.0, gt=0, le=30)
    health_check_interval_seconds: float = Field(1.0, gt=0)
    breaker_failure_threshold: int = Field(5, ge=1)
    breaker_reset_timeout_seconds: float = Field(5.0, gt=0)
    retry_max_attempts: int = Field(3, ge=1, le=10)
    retry_initial_backoff_seconds: float = Field(0.02, ge=0)
    retry_max_backoff_seconds: float = Field(0.5, ge=0)
    # Retries may add at most this share of the recent requests (a retry budget).
    retry_budget_ratio: float = Field(0.2, ge=0, le=1)
    retry_budget_min_per_second: float = Field(5.0, ge=0)

    # Rate limits: tokens per second and bucket size, per client IP.
    rate_limit_enabled: bool = True
    rate_limit_rate: float = Field(50.0, gt=0)
    rate_limit_burst: int = Field(100, ge=1)
    login_rate_limit_rate: float = Field(0.2, gt=0)
    login_rate_limit_burst: int = Field(5, ge=1)
    # Sign-ups per client address: each costs the user service a password hash.
    signup_rate_limit_rate: float = Field(0.1, gt=0)
    signup_rate_limit_burst: int = Field(5, ge=1)
    # On a Redis outage: serve on a per-process bucket (fail-open) or refuse with 503.
    rate_limit_fail_open: bool = True
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Who may read /metrics (the client address as the rate limiter sees it): scrapers inside
    # the deployment. It shows the upstreams' addresses, costs a millisecond or two, and is
    # neither rate limited nor shed; anyone else gets the 404 of a path that does not exist.
    metrics_networks: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [
        "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])

    # Response cache of public GETs.
    cache_enabled: bool = True
    cache_ttl_seconds: float = Field(30.0, gt=0)
    cache_max_stale_seconds: float = Field(300.0, ge=0)

    # Requests: what one may be, and how many one process serves at once.
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    body_timeout_seconds: float = Field(10.0, gt=0)
    # Beyond it an immediate 503: queueing more would only make every answer late.
    max_in_flight: int = Field(64, ge=1)
    # Request heads, bounded by the HTTP protocol itself (gateway/edge/protocol.py): a head not
    # complete this long after the server began waiting for it closes the connection, as does
    # an idle keep-alive connection; a target or header block over its size is refused.
    head_timeout_seconds: float = Field(10.0, gt=0)
    keepalive_timeout_seconds: float = Field(5.0, gt=0)
    # An answer the client has not read for this long (the server's writes stay blocked) ends
    # its connection: a request waiting to write would otherwise stay in flight for good.
    send_timeout_seconds: float = Field(10.0, gt=0)
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    max_target_bytes: int = Field(8 * 1024, ge=256)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Mutual TLS to the services: the operator's CA bundle, the gateway's certificate (URI SAN
    # spiffe://portico/gateway) and key; all three, or none for the development PKI under
    # state_dir/pki (services.common.pki).
    mtls_ca_file: Path | None = None
    mtls_cert_file: Path | None = None
    mtls_key_file: Path | None = None

    # HTTPS: both or neither.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    access_log: bool = True

    _split = field_validator("user_addrs", "product_addrs", "order_addrs",
                             mode="before")(split_addresses)

    @field_validator("trusted_proxies", "metrics_networks", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # NoDecode: the environment's string arrives here as is, comma list or JSON array.
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", "metrics_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)
        return value

    @field_validator("user_addrs", "product_addrs", "order_addrs")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one host:port (or a dns:///name:port) is needed")
        return check_addresses(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        given = [self.mtls_ca_file, self.mtls_cert_file, self.mtls_key_file]
        if any(given) and not all(given):
            raise ValueError("mtls_ca_file, mtls_cert_file and mtls_key_file go together")
        return self

    @property
    def public_key_path(self) -> Path:
        return self.jwt_public_key_file or self.state_dir / "keys" / "jwt-ed25519.pub.pem"


@functools.lru_cache
def get_settings() -> GatewaySettings:
    """The process's settings, read once on first use (never at import time)."""
    return GatewaySettings()
