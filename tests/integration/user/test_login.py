"""Login over real gRPC: argon2id checks, one answer for every failure, and Ed25519 JWTs that
verify with the public key file alone."""

from __future__ import annotations

import stat
import time
import uuid

import grpc
import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.engine import Engine

from portico.user.v1 import user_pb2 as pb
from portico.user.v1 import user_pb2_grpc
from portico.user.v1.user_pb2_grpc import UserServiceStub
from services.common.db import async_engine
from services.common.settings import ServiceSettings
from services.user import tokens
from services.user.passwords import Passwords
from services.user.servicer import SERVICE_NAME, UserServicer
from services.user.store import UserStore
from tests.trust import channel as secure_channel
from tests.trust import serve, tls_for

from .support import public_key

PASSWORD = "s3cret-enough"


async def _user(stub: UserServiceStub, role: str = "") -> pb.User:
    email = f"Login-{uuid.uuid4().hex[:10]}@Example.com"
    return (await stub.CreateUser(pb.CreateUserRequest(
        name="Lou", email=email, password=PASSWORD, role=role))).user


async def _unauthenticated(call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return caught.value.details()


async def test_login_issues_a_token_the_public_key_alone_verifies(
        stub: UserServiceStub, migrated: ServiceSettings) -> None:
    user = await _user(stub, role="admin")
    before = time.time()
    response = await stub.Login(pb.LoginRequest(email=user.email.lower(), password=PASSWORD))
    assert response.token_type == "Bearer"
    assert response.expires_in == migrated.jwt_ttl_seconds
    pem = public_key(migrated)
    claims = jwt.decode(response.access_token, pem, algorithms=["EdDSA"],
                        issuer=migrated.jwt_issuer)
    assert (claims["sub"], claims["role"], claims["iss"]) == (user.id, "admin", "portico")
    # iat keeps its fraction of a second (a token issued just after its user's tokens were
    # ended is told apart from those before); jti is a random id (Logout ends that one token).
    assert before - 1e-6 <= claims["iat"] <= time.time() and claims["iat"] != int(claims["iat"])
    assert claims["exp"] == int(claims["iat"]) + migrated.jwt_ttl_seconds
    assert len(claims["jti"]) == 32
    assert jwt.get_unverified_header(response.access_token)["kid"] == tokens.key_id(pem)
    assert tokens.verify(response.access_token, pem, migrated.jwt_issuer) == claims
    assert b"$argon2" not in response.SerializeToString()


async def test_every_failure_is_the_same_unauthenticated(stub: UserServiceStub) -> None:
    user = await _user(stub)
    wrong = await _unauthenticated(stub.Login(pb.LoginRequest(
        email=user.email, password="not-the-password")))
    unknown = await _unauthenticated(stub.Login(pb.LoginRequest(
        email="nobody-at-all@example.com", password=PASSWORD)))
    await stub.DeleteUser(pb.DeleteUserRequest(id=user.id))
    deleted = await _unauthenticated(stub.Login(pb.LoginRequest(
        email=user.email, password=PASSWORD)))
    assert wrong == unknown == deleted == "invalid email or password"


async def test_a_token_signed_by_another_key_does_not_verify(
        stub: UserServiceStub, migrated: ServiceSettings) -> None:
    user = await _user(stub)
    forged = jwt.encode({"sub": user.id, "role": "admin", "iat": int(time.time()),
                         "exp": int(time.time()) + 60, "iss": migrated.jwt_issuer},
                        Ed25519PrivateKey.generate(), algorithm="EdDSA")
    with pytest.raises(jwt.InvalidSignatureError):
        tokens.verify(forged, public_key(migrated), migrated.jwt_issuer)


async def test_a_token_of_another_issuer_or_expired_does_not_verify(
        migrated: ServiceSettings) -> None:
    private_pem, public_pem = tokens.load_or_create_keys(migrated)
    stale = tokens.TokenIssuer(private_pem, issuer=migrated.jwt_issuer, ttl_seconds=60,
                               clock=lambda: time.time() - 3600).issue(subject="u", role="customer")
    with pytest.raises(jwt.ExpiredSignatureError):
        tokens.verify(stale.access_token, public_pem, migrated.jwt_issuer)
    other = tokens.TokenIssuer(private_pem, issuer="someone-else", ttl_seconds=60)
    with pytest.raises(jwt.InvalidIssuerError):
        tokens.verify(other.issue(subject="u", role="customer").access_token, public_pem,
                      migrated.jwt_issuer)


async def test_a_token_with_alg_none_does_not_verify(migrated: ServiceSettings) -> None:
    unsigned = jwt.encode({"sub": "u", "role": "admin", "iat": 1, "exp": 2 ** 40,
                           "iss": migrated.jwt_issuer}, None, algorithm="none")
    with pytest.raises(jwt.InvalidTokenError):
        tokens.verify(unsigned, public_key(migrated), migrated.jwt_issuer)


async def test_login_rehashes_a_hash_made_with_older_parameters(
        migrated: ServiceSettings, sync_engine: Engine) -> None:
    """A servicer with cheap parameters makes the user; one with the defaults logs it in."""
    private_pem, _ = tokens.load_or_create_keys(migrated)
    issuer = tokens.TokenIssuer(private_pem, issuer="portico", ttl_seconds=60)
    engine = async_engine(migrated.database_url, pool_size=2)
    cheap = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    servers = []
    try:
        for passwords in (Passwords(cheap), Passwords()):
            servicer = UserServicer(UserStore(engine), issuer, passwords=passwords)
            servers.append(await serve(
                [(user_pb2_grpc.add_UserServiceServicer_to_server, servicer, SERVICE_NAME)]))
        old_server, new_server = servers
        tls = tls_for(migrated.state_dir, "gateway")
        async with secure_channel(f"127.0.0.1:{old_server.port}", tls) as channel:
            user = await _user(UserServiceStub(channel))
        old_hash = _hash_of(sync_engine, user.id)
        assert "m=8192,t=1,p=1" in old_hash
        async with secure_channel(f"127.0.0.1:{new_server.port}", tls) as channel:
            await UserServiceStub(channel).Login(pb.LoginRequest(email=user.email,
                                                                 password=PASSWORD))
        new_hash = _hash_of(sync_engine, user.id)
        assert new_hash != old_hash and not Passwords().needs_rehash(new_hash)
        assert await Passwords().verify(new_hash, PASSWORD)
    finally:
        for running in servers:
            await running.stop(0)
        await engine.dispose()


def _hash_of(sync_engine: Engine, user_id: str) -> str:
    with sync_engine.connect() as conn:
        return conn.execute(text("SELECT password_hash FROM users WHERE id = :id"),
                            {"id": user_id}).scalar_one()


def test_the_key_files_are_where_documented(migrated: ServiceSettings) -> None:
    keys = migrated.state_dir / "keys"
    private, public = keys / "jwt-ed25519.pem", keys / "jwt-ed25519.pub.pem"
    assert tokens.public_key_path(migrated) == public
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert tokens.public_pem_of(private.read_bytes()) == public.read_bytes()
