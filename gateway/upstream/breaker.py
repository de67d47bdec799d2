"""A pybreaker circuit breaker per upstream instance, driven from asyncio.

pybreaker's own async support needs tornado, so the call is made by the caller and only its
outcome is handed to pybreaker (`record`), which keeps the state machine: closed -> open after
`fail_max` server-side failures in a row, open -> half-open after `reset_timeout`, where one trial
call decides between closed and open again. `allow` adds what asyncio needs: while open or
half-open, at most one trial call is in flight.
"""

from __future__ import annotations

import datetime as dt
import logging

import pybreaker

from gateway import metrics

log = logging.getLogger("portico.gateway.upstream.breaker")

class ServerSideFailure(Exception):
    """An outcome that counts against an instance (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL...)."""


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, service: str, instance: str) -> None:
        self._labels = {"service": service, "instance": instance}

    def state_change(self, cb, old_state, new_state) -> None:
        log.log(logging.INFO if new_state.name == "closed" else logging.WARNING,
                "circuit breaker %s", new_state.name,
                extra={"upstream": self._labels["service"], "instance": self._labels["instance"]})
        metrics.BREAKER_STATE.labels(**self._labels).set(metrics.BREAKER_STATES[new_state.name])
        metrics.BREAKER_TRANSITIONS.labels(**self._labels, state=new_state.name).inc()


class InstanceBreaker:
    """The breaker of one instance."""

    def __init__(self, *, service: str, instance: str, fail_max: int,
                 reset_timeout: float) -> None:
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_timeout, name=f"{service}@{instance}",
            listeners=[_Listener(service, instance)])
        self._trial_in_flight = False
        metrics.BREAKER_STATE.labels(service=service, instance=instance).set(0)

    @property
    def state(self) -> str:
        return self._cb.current_state

    def seconds_until_trial(self) -> float:
        """How long until an open breaker lets a trial call through (0 when it would now)."""
        opened_at = self._cb._state_storage.opened_at
        if self.state != pybreaker.STATE_OPEN or opened_at is None:
            return 0.0
        due = opened_at + dt.timedelta(seconds=self._cb.reset_timeout)
        return max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds())

    def allow(self) -> bool:
        """True when a call may go to this instance now; claims the trial slot when not closed."""
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return True
        if state == pybreaker.STATE_OPEN and self.seconds_until_trial() > 0:
            return False
        if self._trial_in_flight:
            return False
        self._trial_in_flight = True
        return True

    def record(self, *, failed: bool) -> None:
        """Hands the outcome of a call to the state machine (and frees the trial slot)."""
        self._trial_in_flight = False
        try:
            self._cb.call(_fail if failed else _succeed)
        except (ServerSideFailure, pybreaker.CircuitBreakerError):
            pass

    def release(self) -> None:
        """Frees the trial slot of a call that ended without an outcome (it was cancelled)."""
        self._trial_in_flight = False


def _fail() -> None:
    raise ServerSideFailure()


def _succeed() -> None:
    return None
