"""argon2id password hashing, off the event loop.

A hash or a verification takes tens of milliseconds of CPU and tens of MiB of memory by design,
so each runs in a worker thread: the event loop keeps serving other calls meanwhile. At most
`max_concurrent` run at once per instance; one more is refused at once with UNAVAILABLE and a
retry hint, rather than queued, so a flood of sign-ups or logins cannot pile up CPU and memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.common.errors import Unavailable

BUSY_RETRY_SECONDS = 1.0


class Passwords:
    """Hashes and checks passwords with argon2id (argon2-cffi's RFC 9106 defaults unless told).

    `verify_nobody` spends the same work as a real verification, so that a login with an unknown
    email takes as long as one with a wrong password and timing does not reveal who has an account.
    """

    def __init__(self, hasher: PasswordHasher | None = None, *,
                 max_concurrent: int | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        self._max_concurrent = max_concurrent
        self._running = 0

    async def hash(self, password: str) -> str:
        with self._slot():
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when `password` matches; False when it does not or the hash is unreadable."""
        with self._slot():
            return await asyncio.to_thread(self._verify, password_hash, password)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self._max_concurrent is not None and self._running >= self._max_concurrent:
            raise Unavailable("too many password checks at once; retry shortly",
                              reason="PASSWORD_HASHING_BUSY", retry_after=BUSY_RETRY_SECONDS)
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than this hasher's."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def prepare(self) -> None:
        """Makes the dummy hash now, so the first unknown-email login costs no extra hash."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash,
                                                       secrets.token_urlsafe(32))

    async def verify_nobody(self, password: str) -> None:
        """Verifies against a hash nobody's password matches, for its cost alone."""
        await self.prepare()
        await self.verify(self._dummy_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
