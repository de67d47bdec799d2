"""The development PKI: one CA per state directory (made once, even by processes starting
together), leaves naming their workload identity and hosts, and `portico cert issue`."""

from __future__ import annotations

import ipaddress
import multiprocessing
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common import pki


def _settings(state_dir: Path, **files) -> SimpleNamespace:
    return SimpleNamespace(state_dir=state_dir, **{
        f"mtls_{name}_file": files.get(name) for name in ("ca", "cert", "key")})


def _sans(cert_pem: bytes) -> tuple[list[str], list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (names.get_values_for_type(x509.UniformResourceIdentifier),
            names.get_values_for_type(x509.DNSName),
            [str(ip) for ip in names.get_values_for_type(x509.IPAddress)])


def test_the_ca_is_made_once_and_its_key_kept_private(tmp_path: Path) -> None:
    first = pki.ensure_ca(tmp_path)
    assert pki.ensure_ca(tmp_path) == first
    cert_path, key_path = pki.ca_paths(tmp_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    ca = x509.load_pem_x509_certificate(first[0])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["ca-key.pem", "ca.pem"]


def _ca_in_child(state_dir: str, barrier, results) -> None:
    barrier.wait()
    results.put(pki.ensure_ca(Path(state_dir)))


def test_processes_starting_together_end_up_with_one_ca(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    count = 4
    barrier, results = context.Barrier(count), context.Queue()
    children = [context.Process(target=_ca_in_child, args=(str(tmp_path), barrier, results))
                for _ in range(count)]
    for child in children:
        child.start()
    got = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert len(set(got)) == 1 and got[0] == pki.ensure_ca(tmp_path)


def test_a_leaf_names_its_identity_and_hosts_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    tls = pki.material(_settings(tmp_path), "order", hosts=["10.1.2.3", "order.internal"])
    uris, dns, ips = _sans(tls.cert_pem)
    assert uris == ["spiffe://portico/order"]
    assert dns == ["order.internal", "localhost"] and ips == ["10.1.2.3", "127.0.0.1", "::1"]
    cert = x509.load_pem_x509_certificate(tls.cert_pem)
    ca = x509.load_pem_x509_certificate(tls.ca_pem)
    cert.verify_directly_issued_by(ca)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_server_on_every_address_is_named_by_this_machine(tmp_path: Path) -> None:
    assert pki.served_hosts("0.0.0.0") == pki.served_hosts("::") != ["0.0.0.0"]
    assert pki.served_hosts("127.0.0.2") == ["127.0.0.2"]
    ipaddress.ip_address(pki.served_hosts("[::1]")[0])


@pytest.mark.parametrize("uri, identity", [
    ("spiffe://portico/gateway", "gateway"), ("spiffe://portico/restock-job", "restock-job"),
    ("spiffe://elsewhere/gateway", None), ("spiffe://portico/", None), ("https://x/y", None)])
def test_identity_of_a_uri_san(uri: str, identity: str | None) -> None:
    assert pki.identity_of(uri) == identity


def test_the_operators_files_are_used_as_given_and_go_together(tmp_path: Path) -> None:
    made = pki.material(_settings(tmp_path / "ops"), "user")
    files = {}
    for name, content in (("ca", made.ca_pem), ("cert", made.cert_pem), ("key", made.key_pem)):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(content)
    assert pki.material(_settings(tmp_path / "unused", **files), "user") == made
    assert not (tmp_path / "unused").exists()   # no development CA made beside them
    with pytest.raises(ValueError, match="go together"):
        pki.material(_settings(tmp_path, ca=files["ca"]), "user")


@pytest.mark.parametrize("bad", ["", "a/b", "two words"])
def test_an_identity_is_a_plain_name(tmp_path: Path, bad: str) -> None:
    ca_cert, ca_key = pki.ensure_ca(tmp_path)
    with pytest.raises(ValueError, match="workload identity"):
        pki.issue(bad, ca_cert_pem=ca_cert, ca_key_pem=ca_key)


def test_portico_cert_issue_writes_the_three_files(tmp_path: Path) -> None:
    state, out = tmp_path / "state", tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "cert", "issue", "restock-job", "--out", str(out)],
        env={"PORTICO_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "ca.pem", "restock-job-key.pem", "restock-job.pem"]
    assert (out / "ca.pem").read_bytes() == pki.ensure_ca(state)[0]
    assert stat.S_IMODE((out / "restock-job-key.pem").stat().st_mode) == 0o600
    assert _sans((out / "restock-job.pem").read_bytes())[0] == ["spiffe://portico/restock-job"]
