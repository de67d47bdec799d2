"""Where a service's instances are: the forms a PORTICO_*_ADDRS setting takes.

- `host:port,host:port`: a fixed list of instances;
- `dns:///name:port`: every address the name resolves to (A and AAAA records), asked of the
  system's DNS servers, and asked again as time goes on (instances come and go);
- `dns://authority/name:port`: the same, asked of the DNS server at `authority` (host or
  host:port, port 53 by default), as grpc's own `dns:` target reads it.

A `dns:` target stands alone: it names every instance itself. Only the syntax is checked here;
resolution is the gateway's (gateway/upstream/discovery.py) or grpc's (services/common/clients.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

DNS_SCHEME = "dns:"
DEFAULT_DNS_PORT = 53
# A host name as DNS has it: dot-separated labels of letters, digits, hyphens (and the
# underscore that SRV-style names use), at most 253 characters.
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")


@dataclass(frozen=True)
class DnsTarget:
    """A `dns:` target: the name, the port of every instance, and the DNS server to ask
    (None: the system's)."""

    name: str
    port: int
    authority: tuple[str, int] | None = None

    @property
    def text(self) -> str:
        """The target as grpc reads it: dns:///name:port or dns://host:port/name:port."""
        authority = "" if self.authority is None else join_host_port(*self.authority)
        return f"dns://{authority}/{join_host_port(self.name, self.port)}"


def join_host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_host_port(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; ValueError with `text` in the message."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not host:port")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" not in text and default_port is not None:
        host, port_text = text, ""
    else:
        raise ValueError(f"{text!r} is not host:port")
    if not port_text and default_port is not None:
        return _checked_host(host, text), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} has no port between 1 and 65535")
    return _checked_host(host, text), int(port_text)


def parse_dns_target(text: str) -> DnsTarget:
    """The DnsTarget `text` names; ValueError saying what is wrong with it."""
    if not text.startswith("dns://"):
        raise ValueError(f"{text!r}: a DNS target is dns:///name:port or "
                         "dns://dns-server[:port]/name:port")
    authority_text, slash, endpoint = text[len("dns://"):].partition("/")
    if not slash or not endpoint:
        raise ValueError(f"{text!r}: the name and port follow the third slash, "
                         "as in dns:///user.portico.svc:50051")
    name, port = split_host_port(endpoint)
    authority = split_host_port(authority_text, default_port=DEFAULT_DNS_PORT) \
        if authority_text else None
    return DnsTarget(name.rstrip(".") or name, port, authority)


def dns_target_of(addresses: Sequence[str]) -> DnsTarget | None:
    """The DnsTarget when `addresses` is one `dns:` target, None for a list of host:port."""
    if len(addresses) == 1 and addresses[0].startswith(DNS_SCHEME):
        return parse_dns_target(addresses[0])
    return None


def check_addresses(addresses: Sequence[str]) -> list[str]:
    """`addresses` when they are a valid *_ADDRS value, else ValueError naming the bad part."""
    dns = [address for address in addresses if address.startswith(DNS_SCHEME)]
    if dns and len(addresses) > 1:
        raise ValueError("a dns: target names every instance itself: give it alone, or give "
                         "host:port,host:port without it")
    if dns:
        parse_dns_target(dns[0])
        return list(addresses)
    for address in addresses:
        if "://" in address or address.startswith(("ipv4:", "ipv6:", "unix:")):
            raise ValueError(f"{address!r}: give host:port,host:port or dns:///name:port")
        split_host_port(address)
    return list(addresses)


def _checked_host(host: str, text: str) -> str:
    if not host:
        raise ValueError(f"{text!r} has no host")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if len(host) > 253 or not _HOSTNAME.match(host):
        raise ValueError(f"{text!r}: {host!r} is neither an IP address nor a host name")
    return host
