"""Helpers shared by the User service tests."""

from __future__ import annotations

from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.settings import ServiceSettings


def public_key(settings: ServiceSettings) -> bytes:
    return (Path(settings.state_dir) / "keys" / "jwt-ed25519.pub.pem").read_bytes()


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    """The google.rpc details of a failed call, by kind: violations as {field: description}."""
    status = rpc_status.from_call(error)
    found: dict[str, object] = {}
    for detail in status.details if status else ():
        for kind, message in (("bad_request", error_details_pb2.BadRequest()),
                              ("resource", error_details_pb2.ResourceInfo()),
                              ("error_info", error_details_pb2.ErrorInfo())):
            if detail.Is(message.DESCRIPTOR):
                detail.Unpack(message)
                found[kind] = message
    if "bad_request" in found:
        found["violations"] = {v.field: v.description
                               for v in found["bad_request"].field_violations}
    return found
