"""JWT keys and tokens of the User service: the development key pair on disk, made once even
when several processes start together, configured key files, and the claims of a token."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.settings import ServiceSettings
from services.user import tokens


def _settings(state_dir: Path, **extra) -> ServiceSettings:
    return ServiceSettings(state_dir=state_dir, **extra)


def _pem(key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, tokens.public_pem_of(private)


def test_the_development_pair_is_made_once_and_reused(tmp_path: Path) -> None:
    private_pem, public_pem = tokens.load_or_create_keys(_settings(tmp_path))
    private_path, public_path = tokens.default_key_paths(tmp_path)
    assert private_path == tmp_path / "keys" / "jwt-ed25519.pem"
    assert public_path == tmp_path / "keys" / "jwt-ed25519.pub.pem"
    assert private_path.read_bytes() == private_pem and public_path.read_bytes() == public_pem
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert tokens.load_or_create_keys(_settings(tmp_path)) == (private_pem, public_pem)
    assert sorted(p.name for p in private_path.parent.iterdir()) == [
        "jwt-ed25519.pem", "jwt-ed25519.pub.pem"]  # no temporary file left behind


def test_a_lost_public_file_is_made_again_from_the_private_key(tmp_path: Path) -> None:
    _, public_pem = tokens.load_or_create_keys(_settings(tmp_path))
    public_path = tokens.default_key_paths(tmp_path)[1]
    public_path.write_bytes(b"stale")
    assert tokens.load_or_create_keys(_settings(tmp_path))[1] == public_pem
    assert public_path.read_bytes() == public_pem


def _load_in_child(state_dir: str, barrier, results) -> None:
    barrier.wait()
    results.put(tokens.load_or_create_keys(_settings(Path(state_dir))))


def test_processes_starting_together_end_up_with_one_key_pair(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    count = 4
    barrier, results = context.Barrier(count), context.Queue()
    children = [context.Process(target=_load_in_child, args=(str(tmp_path), barrier, results))
                for _ in range(count)]
    for child in children:
        child.start()
    pairs = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert len(set(pairs)) == 1
    assert tokens.load_or_create_keys(_settings(tmp_path)) == pairs[0]


def test_configured_key_files_are_used(tmp_path: Path) -> None:
    private_pem, public_pem = _pem(Ed25519PrivateKey.generate())
    (tmp_path / "private.pem").write_bytes(private_pem)
    (tmp_path / "public.pem").write_bytes(public_pem)
    settings = _settings(tmp_path / "state", jwt_private_key_file=tmp_path / "private.pem",
                         jwt_public_key_file=tmp_path / "public.pem")
    assert tokens.load_or_create_keys(settings) == (private_pem, public_pem)
    assert tokens.public_key_path(settings) == tmp_path / "public.pem"
    assert not (tmp_path / "state").exists()  # no development pair made beside them
    only_private = _settings(tmp_path / "state", jwt_private_key_file=tmp_path / "private.pem")
    assert tokens.load_or_create_keys(only_private) == (private_pem, public_pem)


@pytest.mark.parametrize(("files", "message"), [
    ({"public": "other"}, "does not match"),
    ({"public": "mine", "private": None}, "without jwt_private_key_file"),
    ({"private": "missing"}, "cannot read JWT key file"),
    ({"private": "ec"}, "not an Ed25519 key"),
    ({"private": "garbage"}, "not a readable"),
])
def test_bad_key_configuration_is_a_clear_value_error(tmp_path: Path, files: dict,
                                                      message: str) -> None:
    mine_private, mine_public = _pem(Ed25519PrivateKey.generate())
    _, other_public = _pem(Ed25519PrivateKey.generate())
    ec_private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    contents = {"mine": mine_public, "other": other_public, "ec": ec_private,
                "garbage": b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"}
    (tmp_path / "mine.pem").write_bytes(mine_private)
    extra = {"jwt_private_key_file": tmp_path / "mine.pem"}
    for role, name in files.items():
        key = f"jwt_{role}_key_file"
        if name is None:
            extra.pop(key)
            continue
        path = tmp_path / f"{role}-{name}.pem"
        if name in contents:
            path.write_bytes(contents[name])
        extra[key] = path
    with pytest.raises(ValueError, match=message):
        tokens.load_or_create_keys(_settings(tmp_path / "state", **extra))


def test_an_issued_token_carries_the_claims_and_kid(tmp_path: Path) -> None:
    private_pem, public_pem = _pem(Ed25519PrivateKey.generate())
    issuer = tokens.TokenIssuer(private_pem, issuer="portico-test", ttl_seconds=900,
                                clock=lambda: 1_700_000_000.7)
    issued = issuer.issue(subject="u1", role="customer")
    assert issued.expires_in == 900
    assert jwt.get_unverified_header(issued.access_token) == {
        "alg": "EdDSA", "typ": "JWT", "kid": tokens.key_id(public_pem)}
    claims = jwt.decode(issued.access_token, public_pem, algorithms=["EdDSA"],
                        options={"verify_exp": False}, issuer="portico-test")
    token_id = claims.pop("jti")
    assert len(token_id) == 32 and int(token_id, 16) >= 0  # a random id, for Logout
    # iat keeps its fraction of a second: a token issued just after its user's tokens were
    # ended is told apart from those issued before.
    assert claims == {"sub": "u1", "role": "customer", "iat": 1_700_000_000.7,
                      "exp": 1_700_000_900, "iss": "portico-test"}
    other = jwt.decode(issuer.issue(subject="u1", role="customer").access_token, public_pem,
                       algorithms=["EdDSA"], options={"verify_exp": False},
                       issuer="portico-test")
    assert other["jti"] != token_id


def test_verify_requires_every_claim(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    _, public_pem = _pem(key)
    without_role = jwt.encode({"sub": "u1", "iat": 1, "exp": 2 ** 40, "iss": "portico"}, key,
                              algorithm="EdDSA")
    with pytest.raises(jwt.MissingRequiredClaimError):
        tokens.verify(without_role, public_pem, "portico")


def test_the_key_id_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037, appendix A.3: the thumbprint of its example Ed25519 public key.
    raw = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    _, public_pem = _pem(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")))
    assert raw == serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert tokens.key_id(public_pem) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
