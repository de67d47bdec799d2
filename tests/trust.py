"""The tests' side of zero trust: a session PKI and JWT keys, channels that show a certificate
(and maybe carry an access token), and tokens minted with a state directory's development key.

Every service the tests start in-process uses `session_state_dir()` as its state directory
(through the `state_dir` fixture), so one development CA and one JWT key pair serve the session.
Stacks run as processes keep their own state directory; `tls_for(that_dir, identity)` then gives
a certificate of that stack's CA.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import time
import uuid
from collections.abc import Collection
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import grpc
import jwt

from services.common import pki
from services.common.admission import Admission
from services.common.callers import CallerRules
from services.common.identity import bearer_metadata
from services.common.jwtkeys import load_or_create_keys, load_private
from services.common.mtls import channel_credentials
from services.common.server import RunningServer, create_server


@cache
def session_state_dir() -> Path:
    """A state directory for the whole test session (its CA under pki/, JWT keys under
    keys/), removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="portico-test-state-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _settings(state_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(state_dir=Path(state_dir), mtls_ca_file=None, mtls_cert_file=None,
                           mtls_key_file=None, jwt_private_key_file=None,
                           jwt_public_key_file=None)


@cache
def tls_for(state_dir: Path, identity: str) -> pki.TlsMaterial:
    """A certificate of workload `identity` from the development CA of `state_dir`."""
    return pki.material(_settings(state_dir), identity)


def credentials(tls: pki.TlsMaterial, token: str | None = None) -> grpc.ChannelCredentials:
    """Channel credentials showing `tls`'s certificate, carrying `token` on every call."""
    plain = channel_credentials(tls)
    if token is None:
        return plain
    return grpc.composite_channel_credentials(plain, grpc.access_token_call_credentials(token))


def channel(address: str, tls: pki.TlsMaterial, *, token: str | None = None,
            options=()) -> grpc.aio.Channel:
    """An asyncio channel to `address` as the workload of `tls` (and the user of `token`)."""
    return grpc.aio.secure_channel(address, credentials(tls, token), options=list(options))


def sync_channel(address: str, tls: pki.TlsMaterial, *, token: str | None = None
                 ) -> grpc.Channel:
    return grpc.secure_channel(address, credentials(tls, token))


def mint(state_dir: Path, subject: str, role: str = "customer", *, ttl: float = 600,
         issued_at: float | None = None, issuer: str = "portico") -> str:
    """An access token signed with `state_dir`'s development key, as the user service would
    issue it (with a jti and a sub-second iat)."""
    private_pem, _ = load_or_create_keys(_settings(state_dir))
    now = time.time() if issued_at is None else issued_at
    claims = {"sub": subject, "role": role, "iat": round(now, 6), "exp": int(now + ttl),
              "iss": issuer, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, load_private(private_pem), algorithm="EdDSA")


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying `token`."""
    return (bearer_metadata(token),)


async def serve(registrations, *, state_dir: Path | None = None, identity: str = "fake",
                      admission: Admission | None = None) -> RunningServer:
    """A gRPC server of the session's CA (mTLS as every service), for test doubles and
    hand-wired servicers: by default every certificate holder may call every method and no
    token is read."""
    tls = tls_for(state_dir or session_state_dir(), identity)
    return await create_server(list(registrations), tls=tls,
                               admission=admission or Admission(CallerRules.allow_all()))


async def refused_within(make_call, seconds: float = 1.0,
                         code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED,
                         interim: Collection[grpc.StatusCode] = ()) -> float:
    """Repeats a call until it is refused with `code`; fails unless that took < `seconds`.
    Until then the call may succeed or fail with an `interim` code (what it answers while the
    service still remembers the token as good), but with no other."""
    started = time.monotonic()
    while True:
        try:
            await make_call()
        except grpc.aio.AioRpcError as error:
            if error.code() == code:
                took = time.monotonic() - started
                assert took < seconds, f"refused only after {took:.2f}s"
                return took
            if error.code() not in interim:
                raise
        assert time.monotonic() - started < seconds, "still accepted after a second"
        await asyncio.sleep(0.02)
