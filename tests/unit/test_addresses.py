"""The forms of a *_ADDRS setting, and the messages a bad one stops the process with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from services.common.addresses import DnsTarget, check_addresses, dns_target_of
from services.common.clients import channel_target
from services.common.settings import ServiceSettings


@pytest.mark.parametrize("value, target", [
    ("dns:///user.portico.svc:50051", DnsTarget("user.portico.svc", 50051)),
    ("dns://10.96.0.10/user:50051", DnsTarget("user", 50051, ("10.96.0.10", 53))),
    ("dns://127.0.0.1:5353/user.test.:1", DnsTarget("user.test", 1, ("127.0.0.1", 5353))),
    ("dns://[::1]:53/user:50051", DnsTarget("user", 50051, ("::1", 53))),
])
def test_dns_targets(value: str, target: DnsTarget) -> None:
    assert check_addresses([value]) == [value]
    assert dns_target_of([value]) == target


def test_a_host_port_list_is_no_dns_target() -> None:
    assert dns_target_of(["127.0.0.1:50051", "[::1]:50052", "user-0.local:1"]) is None


@pytest.mark.parametrize("value, message", [
    (["dns:///user.portico.svc"], "not host:port"),
    (["dns:///user:0"], "no port between 1 and 65535"),
    (["dns:user:50051"], "dns:///name:port"),
    (["dns://"], "follow the third slash"),
    (["dns:///user:1", "127.0.0.1:2"], "give it alone"),
    (["ipv4:127.0.0.1:1"], "host:port,host:port or dns:///name:port"),
    (["http://user:1"], "host:port,host:port or dns:///name:port"),
    (["user"], "not host:port"),
    (["::1:50051"], "not host:port"),
    (["us er:1"], "neither an IP address nor a host name"),
    (["dns:///-bad-:1"], "neither an IP address nor a host name"),
])
def test_bad_values_say_what_is_wrong(value: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_addresses(value)


def test_settings_refuse_a_bad_value_at_start_up(monkeypatch) -> None:
    monkeypatch.setenv("PORTICO_PRODUCT_ADDRS", "dns:///product")
    with pytest.raises(ValidationError, match="product_addrs"):
        GatewaySettings()
    with pytest.raises(ValidationError, match="product_addrs"):
        ServiceSettings()
    monkeypatch.setenv("PORTICO_PRODUCT_ADDRS", "dns:///product.portico.svc:50061")
    assert GatewaySettings().product_addrs == ["dns:///product.portico.svc:50061"]


def test_grpc_targets_of_both_forms() -> None:
    target, options = channel_target(["dns:///user.portico.svc:50051"])
    assert target == "dns:///user.portico.svc:50051"
    assert dict(options) == {"grpc.dns_min_time_between_resolutions_ms": 1000}
    target, options = channel_target(["127.0.0.1:1", "127.0.0.1:2"])
    assert target == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert dict(options) == {"grpc.ssl_target_name_override": "127.0.0.1"}
