"""A pybreaker circuit breaker per upstream instance, driven from asyncio.

pybreaker's own async support needs tornado, so the call is made by the caller and only its
outcome is handed to pybreaker (`record`), which keeps the state machine: closed -> open after
`fail_max` server-side failures in a row, and in half-open one trial call decides between closed
and open again. The open state is timed here, on an injectable monotonic clock: `allow` moves an
open breaker to half-open (pybreaker's public `half_open`) once `reset_timeout` has passed, and
while half-open lets at most one trial call be in flight.

`allow` gives each call a ticket naming the breaker's epoch, which changes at every state
change, and an outcome counts only in the epoch its call started in: a call let through before
the breaker opened neither decides the trial nor counts after the breaker closed again. An open
breaker lets no call through, so no outcome is ever handed to pybreaker while it is open and
pybreaker's own open-state timer, on the wall clock, never runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import pybreaker

from gateway import metrics
from gateway.upstream.tracing import breaker_event

log = logging.getLogger("portico.gateway.upstream.breaker")


class ServerSideFailure(Exception):
    """An outcome that counts against an instance (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL...)."""


@dataclass(frozen=True, eq=False)
class Ticket:
    """What `allow` let a call through with, to report its outcome with: the breaker's epoch
    then (it changes at every state change) and whether the call is the half-open trial."""

    epoch: int
    trial: bool


class _Listener(pybreaker.CircuitBreakerListener):
    """Logs and counts every state change, and tells the breaker about it (`on_change`)."""

    def __init__(self, service: str, instance: str, on_change: Callable[[str], None]) -> None:
        self._labels = {"service": service, "instance": instance}
        self._on_change = on_change
        self.silent = False   # an instance that left: its series are gone and stay gone

    def state_change(self, cb, old_state, new_state) -> None:
        # pybreaker calls this before its storage holds the new state: only `new_state` is sure.
        self._on_change(new_state.name)
        if self.silent:
            return
        breaker_event(f"breaker {new_state.name}", self._labels["service"],
                      self._labels["instance"], new_state.name)
        log.log(logging.INFO if new_state.name == "closed" else logging.WARNING,
                "circuit breaker %s", new_state.name,
                extra={"upstream": self._labels["service"], "instance": self._labels["instance"]})
        metrics.BREAKER_STATE.labels(**self._labels).set(metrics.BREAKER_STATES[new_state.name])
        metrics.BREAKER_TRANSITIONS.labels(**self._labels, state=new_state.name).inc()


class InstanceBreaker:
    """The breaker of one instance."""

    def __init__(self, *, service: str, instance: str, fail_max: int, reset_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # Relied on in pybreaker (as of 1.4), which could change: listeners are told of every
        # state change synchronously, inside open(), half_open(), close() and call(); one
        # success in half-open closes (its default success_threshold of 1); closing resets the
        # failure count.
        self._names = (service, instance)  # for the events in traces
        self._listener = _Listener(service, instance, self._state_changed)
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max, reset_timeout=reset_timeout, name=f"{service}@{instance}",
            listeners=[self._listener])
        self._clock = clock
        self._opened_at = clock()     # set again each time the breaker opens
        self._epoch = 0
        self._closed_ticket = Ticket(0, trial=False)   # one for every call of a closed epoch
        self._trial: Ticket | None = None    # the half-open trial in flight
        metrics.BREAKER_STATE.labels(service=service, instance=instance).set(0)

    @property
    def state(self) -> str:
        return self._cb.current_state

    def retire(self) -> None:
        """The instance left the pool: its late outcomes change no metric."""
        self._listener.silent = True

    def seconds_until_trial(self) -> float:
        """How long until an open breaker lets a trial call through (0 when it would now)."""
        if self.state != pybreaker.STATE_OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cb.reset_timeout - self._clock())

    def allow(self) -> Ticket | None:
        """A ticket when a call may go to this instance now (claiming the trial slot when not
        closed), else None."""
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return self._closed_ticket
        if state == pybreaker.STATE_OPEN:
            if self.seconds_until_trial() > 0:
                breaker_event("breaker refused", *self._names, state)
                return None
            self._cb.half_open()
        if self._trial is not None:
            breaker_event("breaker refused", *self._names, self.state)
            return None
        self._trial = Ticket(self._epoch, trial=True)
        return self._trial

    def record(self, ticket: Ticket, *, failed: bool) -> None:
        """Hands the outcome of the call let through with `ticket` to the state machine when it
        still may decide, and frees the trial slot when that call held it."""
        decides = self._decides(ticket)
        self.release(ticket)
        if not decides:
            return
        try:
            self._cb.call(_fail if failed else _succeed)
        except (ServerSideFailure, pybreaker.CircuitBreakerError):
            pass

    def release(self, ticket: Ticket) -> None:
        """Frees the trial slot when the call let through with `ticket` holds it; for a call
        that ended without an outcome (it was cancelled)."""
        if ticket is self._trial:
            self._trial = None

    def _decides(self, ticket: Ticket) -> bool:
        # The instance may have changed since an earlier epoch's call started: that it failed
        # then, or answered then, says nothing about now. In a closed epoch every call counts,
        # in a half-open one only the trial in flight, and an open epoch has no calls.
        if ticket.epoch != self._epoch:
            return False
        return not ticket.trial or ticket is self._trial

    def _state_changed(self, state: str) -> None:
        self._epoch += 1
        self._trial = None    # a trial holds the slot of its own half-open epoch only
        if state == pybreaker.STATE_CLOSED:
            self._closed_ticket = Ticket(self._epoch, trial=False)
        elif state == pybreaker.STATE_OPEN:
            self._opened_at = self._clock()


def _fail() -> None:
    raise ServerSideFailure()


def _succeed() -> None:
    return None
