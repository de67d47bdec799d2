"""What a service process needs to trust and be trusted: its TLS material (identity), the
admission of its callers (caller rules, token verification, revocation reads), from settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import ServiceDescriptor

from services.common.admission import Admission
from services.common.callers import CallerRules, Table
from services.common.identity import TokenVerifier
from services.common.jwtkeys import verifying_key
from services.common.pki import TlsMaterial, material, served_hosts
from services.common.redisconn import AnyRedis
from services.common.revocation import RevocationReader, redis_client
from services.common.settings import ServiceSettings


@dataclass
class Trust:
    """One process's TLS material, its callers' admission, and the Redis client behind the
    revocation reads (None without PORTICO_REDIS_URL)."""

    tls: TlsMaterial
    admission: Admission
    tokens: TokenVerifier
    revocation: RevocationReader
    redis: AnyRedis | None

    async def close(self) -> None:
        await self.revocation.close()


def build_trust(settings: ServiceSettings, identity: str,
                tables: Mapping[ServiceDescriptor, Table], *, host: str) -> Trust:
    """The trust of a process with workload `identity` serving the services of `tables` on
    `host`."""
    tls = material(settings, identity, hosts=[*served_hosts(host), *settings.advertised_hosts])
    tokens = TokenVerifier(verifying_key(settings), issuer=settings.jwt_issuer)
    client = redis_client(settings.redis_url, timeout=settings.redis_timeout_seconds,
                          mode=settings.redis_mode) if settings.redis_url else None
    revocation = RevocationReader(client)
    admission = Admission(CallerRules(tables), tokens=tokens, revocation=revocation)
    return Trust(tls, admission, tokens, revocation, client)
