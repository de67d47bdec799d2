"""Certificates for mutual TLS between Portico's processes.

Every process has a workload identity ("gateway", "user", "product", "order", or the NAME of an
internal job) carried in its certificate as the URI SAN spiffe://portico/<identity>. Servers
require a client certificate of the same CA, and read the caller's identity from it.

In development the CA is made once under <state_dir>/pki/ (ca.pem, ca-key.pem), and each process
gets a fresh leaf certificate in memory at start-up, signed by that CA and naming the addresses it
serves, so no two processes ever race on a leaf file. In production the operator's PKI supplies
the files instead (PORTICO_MTLS_CA_FILE, PORTICO_MTLS_CERT_FILE, PORTICO_MTLS_KEY_FILE).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.files import create_once, write_atomically

TRUST_DOMAIN = "portico"
PKI_DIR = "pki"
CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
DEVELOPMENT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 365
_ANY_ADDRESS = ("", "0.0.0.0", "::")


class MtlsSettings(Protocol):
    """The settings the PKI reads (ServiceSettings and GatewaySettings both have them)."""

    state_dir: Path
    mtls_ca_file: Path | None
    mtls_cert_file: Path | None
    mtls_key_file: Path | None


@dataclass(frozen=True)
class TlsMaterial:
    """A CA bundle to trust, and this process's certificate chain and private key (PEM)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def spiffe_id(identity: str) -> str:
    """The URI SAN naming a workload identity."""
    return f"spiffe://{TRUST_DOMAIN}/{identity}"


def identity_of(uri: str) -> str | None:
    """The workload identity a URI SAN names, or None when it is not one of ours."""
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    if uri.startswith(prefix) and len(uri) > len(prefix):
        return uri[len(prefix):]
    return None


def check_all_or_none(settings: MtlsSettings) -> None:
    """ValueError unless the three mTLS files are all given or none is."""
    given = [settings.mtls_ca_file, settings.mtls_cert_file, settings.mtls_key_file]
    if any(given) and not all(given):
        raise ValueError("mtls_ca_file, mtls_cert_file and mtls_key_file go together: "
                         "give all three (the operator's PKI) or none (the development PKI)")


def material(settings: MtlsSettings, identity: str, hosts: Iterable[str] = ()) -> TlsMaterial:
    """This process's TLS material: the operator's files when configured, otherwise a leaf for
    `identity` (valid for `hosts` and the development hosts) from the development CA."""
    check_all_or_none(settings)
    if settings.mtls_cert_file is not None:
        return TlsMaterial(*(_read(path) for path in (
            settings.mtls_ca_file, settings.mtls_cert_file, settings.mtls_key_file)))
    ca_cert, ca_key = ensure_ca(settings.state_dir)
    cert, key = issue(identity, ca_cert_pem=ca_cert, ca_key_pem=ca_key, hosts=hosts)
    return TlsMaterial(ca_cert, cert, key)


def ca_paths(state_dir: Path) -> tuple[Path, Path]:
    """(certificate, private key) of the development CA under `state_dir`."""
    directory = Path(state_dir) / PKI_DIR
    return directory / CA_CERT_NAME, directory / CA_KEY_NAME


def ensure_ca(state_dir: Path) -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) of the development CA, made on first use. Safe when several
    processes start at once: the key is settled first and never replaced, then a certificate of
    that key; whoever loses either race reads the winner's file."""
    cert_path, key_path = ca_paths(state_dir)
    cert_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not key_path.exists():
        create_once(key_path, _key_pem(ec.generate_private_key(ec.SECP256R1())), mode=0o600)
    key_pem = key_path.read_bytes()
    if not cert_path.exists():
        create_once(cert_path, _ca_certificate(_load_key(key_pem)), mode=0o644)
    return cert_path.read_bytes(), key_pem


def issue(identity: str, *, ca_cert_pem: bytes, ca_key_pem: bytes, hosts: Iterable[str] = (),
          days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) of a new leaf for `identity`, signed by the CA: usable as server
    and as client, its SANs the identity's URI plus `hosts` and the development hosts."""
    if not identity or "/" in identity or any(c.isspace() for c in identity):
        raise ValueError(f"{identity!r} is not a workload identity (a name without / or spaces)")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = _load_key(ca_key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(identity)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_usage(cert_sign=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.SubjectAlternativeName(_sans(identity, hosts)),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def served_hosts(host: str) -> list[str]:
    """The names a server bound to `host` is reached by: the host itself, or this machine's
    name when it listens on every address."""
    host = host.strip("[]")
    if host in _ANY_ADDRESS:
        return [socket.gethostname()]
    return [host]


def write_issued(out_dir: Path, identity: str, tls: TlsMaterial) -> list[Path]:
    """Writes ca.pem, <identity>.pem and <identity>-key.pem (0600) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content, mode in ((CA_CERT_NAME, tls.ca_pem, 0o644),
                                (f"{identity}.pem", tls.cert_pem, 0o644),
                                (f"{identity}-key.pem", tls.key_pem, 0o600)):
        path = out_dir / name
        write_atomically(path, content, mode=mode)
        written.append(path)
    return written


def _sans(identity: str, hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(identity))]
    seen = set()
    for host in (*hosts, *DEVELOPMENT_HOSTS):
        host = host.strip("[]")
        if not host or host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _ca_certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    name = _name("Portico development CA")
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portico"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the development CA key is not an EC key")
    return key


def _read(path: Path | None) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read mTLS file {path}: {error.strerror}") from error
