"""Who may read /metrics (gateway/routes/ops.py): the setting, and the address test it uses."""

import pytest
from pydantic import ValidationError

from gateway.policies.clientip import inside, parse_networks
from gateway.settings import GatewaySettings


def test_the_default_is_loopback_and_the_private_ranges(monkeypatch) -> None:
    networks = parse_networks(GatewaySettings().metrics_networks)
    for address in ("127.0.0.1", "::1", "10.1.2.3", "172.20.0.5", "192.168.1.1", "fd00::7"):
        assert inside(address, networks), address
    for address in ("203.0.113.9", "8.8.8.8", "2001:db8::1", "not an address", ""):
        assert not inside(address, networks), address


def test_it_comes_from_the_environment_and_must_be_networks(monkeypatch) -> None:
    monkeypatch.setenv("PORTICO_METRICS_NETWORKS", "10.8.0.0/16, 192.0.2.7")
    assert GatewaySettings().metrics_networks == ["10.8.0.0/16", "192.0.2.7"]
    monkeypatch.setenv("PORTICO_METRICS_NETWORKS", "10.8.0.0/16,prometheus")
    with pytest.raises(ValidationError, match="metrics_networks"):
        GatewaySettings()
