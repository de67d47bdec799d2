"""deploy/k8s/base/probe/grpc-health.py, the services' readiness and liveness probe, run as the
kubelet runs it (a process of its own, only the pod's PORTICO_MTLS_* in its environment)
against a real Portico gRPC server over mutual TLS: with a certificate as an operator issues it,
naming the headless Service and not 127.0.0.1, so the probe must check the server against the
certificate's own name."""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.admission import Admission
from services.common.callers import CallerRules
from services.common.pki import TlsMaterial
from services.common.server import create_server
from tests.deploy.tools import K8S

PROBE = K8S / "base" / "probe" / "grpc-health.py"
NAME = "user.portico.svc.cluster.local"


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def operator_pki() -> TlsMaterial:
    """A CA and a leaf for the user service as an operator's PKI would make them: the SPIFFE
    URI and the headless Service's DNS name, no IP address, both TLS usages."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "user")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier("spiffe://portico/user"), x509.DNSName(NAME)]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return TlsMaterial(ca.public_bytes(serialization.Encoding.PEM),
                       leaf.public_bytes(serialization.Encoding.PEM), _pem(key))


@pytest.fixture
def mounted(tmp_path: Path) -> tuple[TlsMaterial, dict[str, str]]:
    """The pod's Secret, mounted as files, and the environment the probe gets."""
    tls = operator_pki()
    files = {"ca.crt": tls.ca_pem, "tls.crt": tls.cert_pem, "tls.key": tls.key_pem}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    env = {"PATH": os.environ.get("PATH", ""),
           "PORTICO_MTLS_CA_FILE": str(tmp_path / "ca.crt"),
           "PORTICO_MTLS_CERT_FILE": str(tmp_path / "tls.crt"),
           "PORTICO_MTLS_KEY_FILE": str(tmp_path / "tls.key")}
    return tls, env


async def probe(port: int, env: dict[str, str], *args: str) -> tuple[int, str]:
    """Runs the probe as the kubelet would, without blocking the server's event loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(PROBE), str(port), *args, env=env, cwd="/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode, stderr.decode()


async def test_serving_then_not_serving_then_gone(mounted) -> None:
    tls, env = mounted
    running = await create_server([], tls=tls, admission=Admission(CallerRules.allow_all()),
                                  host="127.0.0.1", port=0)
    try:
        assert await probe(running.port, env) == (0, "")
        # What a stopping service says first: the pod leaves the endpoints.
        await running.health.enter_graceful_shutdown()
        code, said = await probe(running.port, env)
        assert code == 1 and "NOT_SERVING" in said
    finally:
        await running.server.stop(0)
    code, said = await probe(running.port, env)
    assert code == 1 and "UNAVAILABLE" in said


async def test_a_server_of_another_ca_is_not_ready(mounted) -> None:
    _, env = mounted
    stranger = operator_pki()  # same names, another CA
    running = await create_server([], tls=stranger, admission=Admission(CallerRules.allow_all()),
                                  host="127.0.0.1", port=0)
    try:
        code, said = await probe(running.port, env)
        assert code == 1 and "UNAVAILABLE" in said
    finally:
        await running.server.stop(0)


async def test_a_bad_invocation_says_how() -> None:
    code, said = await probe(0, {"PATH": os.environ.get("PATH", "")}, "x", "y")
    assert code == 2 and "usage" in said
