"""PORTICO_REDIS_MODE: standalone by default, cluster on request, nothing else; a cluster URL
names database 0 only."""

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.settings import GatewaySettings
from services.common.redisconn import connect
from services.common.settings import ServiceSettings


@pytest.mark.parametrize("settings", [GatewaySettings, ServiceSettings])
def test_the_mode_is_standalone_unless_told(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("PORTICO_REDIS_MODE", raising=False)
    assert settings().redis_mode == "standalone"
    monkeypatch.setenv("PORTICO_REDIS_MODE", "cluster")
    assert settings().redis_mode == "cluster"
    monkeypatch.setenv("PORTICO_REDIS_MODE", "sentinel")
    with pytest.raises(ValidationError):
        settings()


def test_clients_of_each_mode() -> None:
    url = "redis://:secret@127.0.0.1:7000/0"
    assert type(connect(url, mode="standalone", timeout=1, connect_timeout=1)) is Redis
    assert type(connect(url, mode="cluster", timeout=1, connect_timeout=1)) is RedisCluster
    with pytest.raises(ValueError, match="database 0"):
        connect("redis://127.0.0.1:7000/3", mode="cluster", timeout=1, connect_timeout=1)
    with pytest.raises(ValueError, match="PORTICO_REDIS_MODE"):
        connect(url, mode="sentinel", timeout=1, connect_timeout=1)  # type: ignore[arg-type]
