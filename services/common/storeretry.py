"""A bounded retry of store operations that are safe to repeat, while a database fails over.

A PostgreSQL primary that stops (and a standby promoted in its place), or a MongoDB primary that
steps down, fails the operations in flight and refuses new ones for a few seconds. An operation
whose repetition cannot do anything twice (a read, a conditional UPDATE, an insert keyed by its
own id, a stock move guarded by its reservation's marker) is tried again with exponential
backoff and jitter for up to `seconds`; then, or at once for an operation not marked safe, the
failure stands, as UNAVAILABLE when it was the database's (so callers may retry in their turn).
What counts as transient is the store's to say (services/common/db.py for PostgreSQL,
services/product/store.py for MongoDB).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from services.common.errors import Unavailable

log = logging.getLogger("portico.store.retry")

T = TypeVar("T")
FIRST_WAIT, MAX_WAIT = 0.05, 1.0


class StoreRetry:
    """Retries `transient` failures of operations safe to repeat, for up to `seconds`."""

    def __init__(self, transient: Callable[[BaseException], bool], *, seconds: float,
                 database: str) -> None:
        self._transient = transient
        self._seconds = seconds
        self._database = database
        self._wait = wait_exponential_jitter(multiplier=FIRST_WAIT, max=MAX_WAIT, jitter=FIRST_WAIT)

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """operation(), tried again while it fails transiently, within the bound."""
        try:
            # Most operations succeed at once: they never pay for building a retry loop.
            return await operation()
        except Exception as error:
            if not self._transient(error):
                raise
            if self._seconds <= 0:
                raise self._unavailable() from error
            first_failure: BaseException | None = error
        retrying = AsyncRetrying(
            retry=retry_if_exception(self._transient), wait=self._wait, reraise=True,
            stop=stop_after_delay(self._seconds), before_sleep=self._log)
        try:
            async for attempt in retrying:
                with attempt:
                    if first_failure is not None:
                        # Attempt 1 is the try above: tenacity decides on it like on any other.
                        failure, first_failure = first_failure, None
                        raise failure
                    return await operation()
        except Exception as error:
            if self._transient(error):
                raise self._unavailable() from error
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _unavailable(self) -> Unavailable:
        return Unavailable(f"the {self._database} database is unavailable",
                           reason="DATABASE_UNAVAILABLE", metadata={"database": self._database},
                           retry_after=1.0)

    def _log(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        # One WARNING per operation; its further tries at DEBUG (a failover makes many).
        level = logging.WARNING if state.attempt_number == 1 else logging.DEBUG
        log.log(level, "database operation failed; retrying", extra={
            "database": self._database, "attempt": state.attempt_number,
            "error": f"{type(error).__name__}: {error}".splitlines()[0]})


def retried(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """For a store method that is safe to repeat: run through the store's `_retry`."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs) -> T:
        return await self._retry.run(lambda: method(self, *args, **kwargs))

    return wrapper
