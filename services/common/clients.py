"""Channels from one service to another: mutual TLS with this process's certificate, grpc's own
round_robin over every instance, retries of UNAVAILABLE by a service-config retryPolicy, and the
caller's deadline, request id and access token passed on.

The instances are a fixed `host:port` list (an `ipv4:` target) or a `dns:` target, which grpc
resolves itself: again when a connection is lost or closed by the server's maximum connection
age, at most once a second (grpc's default is 30 s, during which a dead instance's calls fail).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

import grpc

from services.common.addresses import dns_target_of
from services.common.admission import current_caller
from services.common.identity import bearer_metadata
from services.common.interceptors import REQUEST_ID_KEY
from services.common.keepalive import CLIENT_KEEPALIVE
from services.common.logs import request_id_var
from services.common.mtls import channel_credentials
from services.common.pki import TlsMaterial
from services.common.tracing.rpc import client_interceptors


def service_config(service: str, *, max_attempts: int = 4) -> str:
    """Round robin over the resolved addresses; UNAVAILABLE retried with backoff (gRFC A6)."""
    return json.dumps({
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{
            "name": [{"service": service}],
            "retryPolicy": {
                "maxAttempts": max_attempts,
                "initialBackoff": "0.02s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }],
    })


def ipv4_target(addresses: Sequence[str]) -> str:
    """The `ipv4:` target naming every instance, e.g. ipv4:127.0.0.1:50051,127.0.0.1:50052."""
    if not addresses:
        raise ValueError("no addresses given")
    for address in addresses:
        host, _, port = address.rpartition(":")
        ipaddress.IPv4Address(host)  # raises ValueError with the bad host in its message
        if not port.isdigit():
            raise ValueError(f"{address!r} has no numeric port")
    return "ipv4:" + ",".join(addresses)


def common_host(addresses: Sequence[str]) -> str:
    """The host every instance is on: the name their certificates are checked against (one
    channel checks every instance against one name)."""
    hosts = {address.rpartition(":")[0] for address in addresses}
    if len(hosts) != 1:
        raise ValueError(f"instances {', '.join(addresses)} are on several hosts: one channel "
                         "checks every instance's certificate against one host name")
    return hosts.pop()


DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS = 1000


def channel_target(addresses: Sequence[str]) -> tuple[str, list[tuple[str, object]]]:
    """The grpc target naming every instance and the options it needs."""
    dns = dns_target_of(addresses)
    if dns is not None:
        # The certificates are checked against the name itself (grpc's default for dns:).
        return dns.text, [("grpc.dns_min_time_between_resolutions_ms",
                           DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS)]
    # An ipv4: target of several addresses has no host of its own to check.
    return ipv4_target(addresses), [("grpc.ssl_target_name_override", common_host(addresses))]


def service_channel(addresses: Sequence[str], service: str, tls: TlsMaterial
                    ) -> grpc.aio.Channel:
    """One channel balancing over all instances of `service` (a full name such as
    portico.user.v1.UserService), showing the certificate of `tls`."""
    target, options = channel_target(addresses)
    return grpc.aio.secure_channel(target, channel_credentials(tls), options=[
        ("grpc.service_config", service_config(service)),
        ("grpc.enable_retries", 1),
        # A dead peer found within about 3 s, even one that vanished without a reset: its
        # calls fail UNAVAILABLE (retried on another instance) and the name is resolved again.
        *CLIENT_KEEPALIVE,
        *options,
    ], interceptors=client_interceptors())  # traces: a CLIENT span and traceparent, when on


def outgoing(context: grpc.aio.ServicerContext | None, default_timeout: float) -> dict:
    """Keyword arguments for a stub call made while serving `context`: the caller's remaining
    deadline (or the default when it gave none), its request id and its access token, so the
    service called applies the end user's rights. Without `context` (a compensating call that
    must happen whoever asked, even after their token was revoked) no token goes along."""
    timeout = default_timeout
    metadata = [(REQUEST_ID_KEY, request_id_var.get())]
    if context is not None:
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.0))
        token = current_caller().token
        if token is not None:
            metadata.append(bearer_metadata(token))
    return {"timeout": timeout, "metadata": tuple(metadata)}
