"""argon2id password hashing, off the event loop.

A hash or a verification takes tens of milliseconds of CPU and tens of MiB of memory by design,
so each runs in a worker thread: the event loop keeps serving other calls meanwhile.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Passwords:
    """Hashes and checks passwords with argon2id (argon2-cffi's RFC 9106 defaults unless told).

    `verify_nobody` spends the same work as a real verification, so that a login with an unknown
    email takes as long as one with a wrong password and timing does not reveal who has an account.
    """

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when `password` matches; False when it does not or the hash is unreadable."""
        return await asyncio.to_thread(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than this hasher's."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def prepare(self) -> None:
        """Makes the dummy hash now, so the first unknown-email login costs no extra hash."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(32))

    async def verify_nobody(self, password: str) -> None:
        """Verifies against a hash nobody's password matches, for its cost alone."""
        await self.prepare()
        await self.verify(self._dummy_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
