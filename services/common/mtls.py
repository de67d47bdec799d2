"""gRPC credentials from TLS material, and the caller's workload identity from its certificate."""

from __future__ import annotations

import grpc

from services.common.pki import TlsMaterial, identity_of

UNKNOWN_WORKLOAD = "unknown"


def server_credentials(tls: TlsMaterial) -> grpc.ServerCredentials:
    """TLS only, and the client must present a certificate of the CA in `tls`."""
    return grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)],
                                       root_certificates=tls.ca_pem, require_client_auth=True)


def channel_credentials(tls: TlsMaterial) -> grpc.ChannelCredentials:
    """The server is checked against the CA in `tls` (host names as usual), and this process
    shows its own certificate."""
    return grpc.ssl_channel_credentials(root_certificates=tls.ca_pem, private_key=tls.key_pem,
                                        certificate_chain=tls.cert_pem)


def peer_identity(context: grpc.aio.ServicerContext) -> str:
    """The workload identity in the caller's certificate (its spiffe://portico/<name> URI SAN),
    or UNKNOWN_WORKLOAD for a certificate of the CA that names none. grpc exposes the URI SAN
    itself (peer_spiffe_id when it is a valid SPIFFE id, peer_uri for every URI SAN)."""
    auth = context.auth_context()
    for key in ("peer_spiffe_id", "peer_uri"):
        for value in auth.get(key, ()):
            identity = identity_of(value.decode(errors="replace"))
            if identity:
                return identity
    return UNKNOWN_WORKLOAD
