"""HTTPS with a certificate made here, served by several gateway worker processes that share
nothing but Redis."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.conftest import redis_db, start_stack
from tests.e2e.test_up import descendants


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory, pg_url, redis_url, mongo_uri):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(tmp)
    stack, name = start_stack(tmp, pg_url=pg_url, redis_url=redis_db(redis_url, 2),
                              mongo_uri=mongo_uri, instances=1, gateway_workers=2,
                              env={"PORTICO_TLS_CERT_FILE": str(cert),
                                   "PORTICO_TLS_KEY_FILE": str(key)})
    yield stack, cert
    stack.stop()


def test_https_with_a_verified_certificate(tls_stack) -> None:
    stack, cert = tls_stack
    assert stack.gateway_url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=stack.gateway_url, verify=context, timeout=30) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 200
        assert answer.headers["strict-transport-security"].startswith("max-age=")
        assert client.get("/products").status_code == 200
    with pytest.raises(httpx.TransportError):  # plain HTTP is not spoken there
        httpx.get(stack.gateway_url.replace("https://", "http://") + "/readyz", timeout=5)


def test_two_worker_processes_serve_as_one_gateway(tls_stack) -> None:
    stack, cert = tls_stack
    gateway = stack.children["gateway"].process
    workers = [pid for pid in descendants(gateway.pid)
               if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(workers) == 2
    with httpx.Client(base_url=stack.gateway_url, verify=False, timeout=30) as client:
        before = _served(client)
        for _ in range(40):
            assert client.get("/healthz").status_code == 200
        # /metrics adds up every worker, whichever one answers the scrape.
        assert _served(client) - before == 40


def _served(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("portico_http_requests_total{") and 'route="/healthz"' in line)
