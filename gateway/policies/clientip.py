"""Who a request comes from, for the rate limiter: the direct peer, or the client named by
X-Forwarded-For when the peer is a trusted proxy. IPv6 clients are keyed by their /64, since one
host commonly holds a whole /64 and could otherwise pick a fresh bucket per request."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# X-Forwarded-For entries read at most: every trusted hop appends one, so a chain longer than
# this is a client writing its own (never believed anyway) and is not walked further.
MAX_HOPS = 32


def parse_networks(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Trusted proxies as networks ("10.0.0.0/8", or a single address)."""
    return tuple(ipaddress.ip_network(network.strip(), strict=False) for network in networks)


def client_ip(peer: str | None, forwarded_for: str | None,
              trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the direct peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each proxy appends the
    address it saw) and the first address that is not a trusted proxy is the client. Entries
    further left were written by the client itself and are never believed. An unreadable entry
    within the trusted chain means the chain cannot be trusted: the peer is used.
    """
    peer_address = _address(peer)
    if peer_address is None:
        return peer or "unknown"
    if not forwarded_for or not _inside(peer_address, trusted):
        return str(peer_address)
    hop = peer_address
    # rsplit with a bound: linear in the header's length whatever the client wrote into it.
    for entry in reversed(forwarded_for.rsplit(",", MAX_HOPS)[-MAX_HOPS:]):
        address = _address(entry.strip())
        if address is None:
            return str(peer_address)
        hop = address
        if not _inside(hop, trusted):
            return str(hop)
    # Every hop is a trusted proxy: the farthest one is where the request came from.
    return str(hop)


def inside(address: str, networks: Sequence[IPNetwork]) -> bool:
    """Whether `address` (a client address, as client_ip gives it) is in one of `networks`."""
    parsed = _address(address)
    return parsed is not None and _inside(parsed, networks)


def client_key(address: str) -> str:
    """The bucket key of a client address: IPv4 as is, IPv6 by its /64 network."""
    if ":" not in address:  # IPv4 (or not an address at all): as it is, without parsing
        return address
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return address


def _address(text: str | None) -> IPAddress | None:
    if not text or len(text) > 64:  # no address is longer; nothing long is parsed
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _inside(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)
