"""Channels from one service to another: grpc's own round_robin over every instance, retries of
UNAVAILABLE by a service-config retryPolicy, and the caller's deadline and request id passed on."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

import grpc

from services.common.interceptors import REQUEST_ID_KEY
from services.common.logs import request_id_var


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


def service_channel(addresses: Sequence[str], service: str) -> grpc.aio.Channel:
    """One channel balancing over all instances of `service` (a full name such as
    portico.user.v1.UserService)."""
    return grpc.aio.insecure_channel(ipv4_target(addresses), options=[
        ("grpc.service_config", service_config(service)),
        ("grpc.enable_retries", 1),
    ])


def outgoing(context: grpc.aio.ServicerContext | None, default_timeout: float) -> dict:
    """Keyword arguments for a stub call made while serving `context`: the caller's remaining
    deadline (or the default when it gave none) and its request id."""
    timeout = default_timeout
    if context is not None:
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.0))
    return {"timeout": timeout, "metadata": ((REQUEST_ID_KEY, request_id_var.get()),)}
