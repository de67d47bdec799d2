"""Readiness of the Portico gRPC service in this pod, for a Kubernetes exec probe.

Kubernetes' own `grpc` probe cannot show a client certificate, and every Portico port requires
one (mutual TLS), so the kubelet runs this file instead, in the service's own container:

    python /etc/portico/probe/grpc-health.py PORT [SERVICE]

It asks 127.0.0.1:PORT the standard grpc.health.v1 Check for SERVICE (default "": the whole
server) over mutual TLS, showing this pod's own certificate (PORTICO_MTLS_CA_FILE,
_CERT_FILE, _KEY_FILE: health is open to any certificate of the CA), and checks the server's
certificate against the first DNS (else IP) name of that same certificate, since both are the
pod's. Exit 0 on SERVING; 1 on NOT_SERVING (a service that is stopping says so first) or any
error, with one line on stderr that `kubectl describe pod` shows.

It imports only grpcio and grpcio-health-checking (the image's own dependencies) and reads
nothing else, so it is one file mounted from a ConfigMap rather than a command of the image.
Its name has a hyphen on purpose: Python puts the script's folder first on sys.path, and a file
named grpc_health.py would hide the package of that name.
"""

from __future__ import annotations

import ipaddress
import os
import sys


def _read(variable: str) -> bytes:
    path = os.environ.get(variable)
    if not path:
        raise SystemExit(f"probe: {variable} is not set")
    with open(path, "rb") as file:
        return file.read()


def _own_name(cert_pem: bytes) -> str:
    """The name the server's certificate (this pod's own) is checked against."""
    from cryptography import x509

    sans = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    for name in sans.get_values_for_type(x509.DNSName):
        return name
    for address in sans.get_values_for_type(x509.IPAddress):
        return str(ipaddress.ip_address(address))
    raise SystemExit("probe: the certificate names no DNS or IP address")


def check(port: int, service: str = "", timeout: float = 2.0) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    cert = _read("PORTICO_MTLS_CERT_FILE")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read("PORTICO_MTLS_CA_FILE"),
        private_key=_read("PORTICO_MTLS_KEY_FILE"), certificate_chain=cert)
    options = [("grpc.ssl_target_name_override", _own_name(cert)),
               ("grpc.enable_retries", 0)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            print(f"probe: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if status != "SERVING":
        print(f"probe: {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2 or not argv[0].isdigit():
        print("usage: grpc-health.py PORT [SERVICE]", file=sys.stderr)
        return 2
    return check(int(argv[0]), argv[1] if len(argv) == 2 else "")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
