"""The JWT signing keys: Ed25519, so whoever verifies needs the public key only.

Key files, when PORTICO_JWT_PRIVATE_KEY_FILE is not set (a development key pair, made once):
    <state_dir>/keys/jwt-ed25519.pem       private key, PKCS#8 PEM, mode 0600
    <state_dir>/keys/jwt-ed25519.pub.pem   public key, SubjectPublicKeyInfo PEM, mode 0644
The user service signs with the private key; every other service (and the gateway) verifies with
the public one (`verifying_key` finds it for given settings).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.common.files import create_once, write_atomically

KEY_DIR = "keys"
PRIVATE_KEY_NAME = "jwt-ed25519.pem"
PUBLIC_KEY_NAME = "jwt-ed25519.pub.pem"


class KeySettings(Protocol):
    """The settings the key functions read (ServiceSettings has them; so may the gateway's)."""

    state_dir: Path
    jwt_private_key_file: Path | None
    jwt_public_key_file: Path | None


def default_key_paths(state_dir: Path) -> tuple[Path, Path]:
    """(private, public) paths of the development key pair under `state_dir`."""
    directory = Path(state_dir) / KEY_DIR
    return directory / PRIVATE_KEY_NAME, directory / PUBLIC_KEY_NAME


def public_key_path(settings: KeySettings) -> Path:
    """Where the public key of `settings` lives: the configured file or the development one."""
    return settings.jwt_public_key_file or default_key_paths(settings.state_dir)[1]


def load_or_create_keys(settings: KeySettings) -> tuple[bytes, bytes]:
    """(private_pem, public_pem) from the configured files, or else the development pair under
    state_dir, created on first use. Two processes starting at once end up with the same pair.
    Raises ValueError with a clear message for missing, unreadable or mismatched keys."""
    if settings.jwt_private_key_file is not None:
        private_pem = _read(settings.jwt_private_key_file)
        public_pem = public_pem_of(private_pem)
        if settings.jwt_public_key_file is not None:
            given = _load_public(_read(settings.jwt_public_key_file))
            if _public_bytes(given) != public_pem:
                raise ValueError("jwt_public_key_file does not match jwt_private_key_file")
        return private_pem, public_pem
    if settings.jwt_public_key_file is not None:
        raise ValueError("jwt_public_key_file is set without jwt_private_key_file: "
                         "the user service needs the private key to sign tokens")
    private_path, public_path = default_key_paths(settings.state_dir)
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not private_path.exists():
        _create_private(private_path)
    private_pem = _read(private_path)
    public_pem = public_pem_of(private_pem)
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        # The same bytes from every writer: whoever lands last is fine.
        write_atomically(public_path, public_pem, mode=0o644)
    return private_pem, public_pem


def public_pem_of(private_pem: bytes) -> bytes:
    return _public_bytes(load_private(private_pem).public_key())


def key_id(public_pem: bytes) -> str:
    """The RFC 7638 JWK thumbprint of the public key: stable, and names the key in `kid`."""
    raw = _load_public(public_pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    digest = hashlib.sha256(json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode())
    return _b64url(digest.digest())


def verifying_key(settings: KeySettings) -> bytes:
    """The public key PEM tokens are checked with: the configured public (or private) key file,
    or else the development pair under state_dir (made on first use, as the user service
    does, so a service may start before it)."""
    if settings.jwt_public_key_file is not None:
        return _public_bytes(_load_public(_read(settings.jwt_public_key_file)))
    return load_or_create_keys(settings)[1]


def _create_private(path: Path) -> None:
    # Several processes may start at once: the first key written wins, every other one reads it.
    create_once(path, Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), mode=0o600)


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read JWT key file {path}: {error.strerror}") from error


def load_private(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a readable unencrypted PEM private key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the JWT private key is not an Ed25519 key")
    return key


def _load_public(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as error:
        raise ValueError(f"not a readable PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the JWT public key is not an Ed25519 key")
    return key


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
