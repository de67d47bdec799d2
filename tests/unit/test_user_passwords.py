"""argon2id hashing of the User service (cheap parameters keep these fast)."""

from __future__ import annotations

from argon2 import PasswordHasher

from services.user.passwords import Passwords

CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


async def test_hash_and_verify() -> None:
    passwords = Passwords(CHEAP)
    hashed = await passwords.hash("open sesame")
    assert hashed.startswith("$argon2id$") and "open sesame" not in hashed
    assert await passwords.verify(hashed, "open sesame")
    assert not await passwords.verify(hashed, "open sesame!")
    assert await passwords.hash("open sesame") != hashed  # salted


async def test_an_unreadable_hash_verifies_nothing_and_needs_rehash() -> None:
    passwords = Passwords(CHEAP)
    assert not await passwords.verify("not-a-hash", "anything")
    assert passwords.needs_rehash("not-a-hash")


async def test_needs_rehash_when_parameters_changed() -> None:
    cheap_hash = await Passwords(CHEAP).hash("open sesame")
    assert not Passwords(CHEAP).needs_rehash(cheap_hash)
    assert Passwords().needs_rehash(cheap_hash)


async def test_verify_nobody_spends_a_verification_on_any_password() -> None:
    passwords = Passwords(CHEAP)
    for password in ("", "open sesame", "p" * 256):
        assert await passwords.verify_nobody(password) is None
