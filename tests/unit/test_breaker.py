"""The circuit breaker of one instance, on a fake clock: no I/O, no sleeps."""

from __future__ import annotations

import pybreaker
from prometheus_client import REGISTRY

from gateway.upstream.breaker import InstanceBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def opened(clock: FakeClock, *, reset_timeout: float = 5.0,
           instance: str = "i") -> InstanceBreaker:
    """A breaker that one server-side failure has just opened."""
    breaker = InstanceBreaker(service="s", instance=instance, fail_max=1,
                              reset_timeout=reset_timeout, clock=clock)
    breaker.record(breaker.allow(), failed=True)
    assert breaker.state == "open"
    return breaker


def call(breaker: InstanceBreaker, *, failed: bool) -> None:
    """A call that starts and ends now."""
    ticket = breaker.allow()
    assert ticket is not None
    breaker.record(ticket, failed=failed)


def test_a_breaker_opens_after_consecutive_server_failures_only() -> None:
    breaker = InstanceBreaker(service="s", instance="a", fail_max=3, reset_timeout=60,
                              clock=FakeClock())
    for _ in range(2):
        call(breaker, failed=True)
    call(breaker, failed=False)           # a success (or a client error) resets the count
    for _ in range(2):
        call(breaker, failed=True)
    assert breaker.state == "closed"
    call(breaker, failed=True)
    assert breaker.state == "open" and breaker.allow() is None
    assert breaker.seconds_until_trial() == 60


def test_the_trial_waits_for_reset_timeout_on_the_breakers_clock() -> None:
    clock = FakeClock()
    breaker = opened(clock, reset_timeout=5)
    clock.now = 4.0
    assert breaker.seconds_until_trial() == 1.0 and breaker.allow() is None
    assert breaker.state == "open"
    clock.now = 5.0
    assert breaker.seconds_until_trial() == 0.0
    ticket = breaker.allow()
    assert ticket is not None and ticket.trial and breaker.state == "half-open"


def test_wall_time_alone_never_lets_a_trial_through() -> None:
    """pybreaker times its open state on the wall clock; here that time is up at once, but the
    breaker's own clock has not moved, so the breaker stays open."""
    clock = FakeClock()
    breaker = InstanceBreaker(service="s", instance="w", fail_max=2, reset_timeout=1e-9,
                              clock=clock)
    late = breaker.allow()
    call(breaker, failed=True)
    call(breaker, failed=True)
    assert breaker.state == "open" and breaker.allow() is None
    breaker.record(late, failed=False)    # a late outcome, while open, decides nothing
    assert breaker.state == "open" and breaker.allow() is None


def test_pybreakers_private_open_time_is_never_read(monkeypatch) -> None:
    """pybreaker writes when it opened in its state storage; reading it back is for pybreaker's
    own open-state timer, which must never run (the breaker times its open state itself)."""
    storage = pybreaker.CircuitMemoryStorage

    def unreadable(self):
        raise AssertionError("pybreaker's opened_at was read")

    monkeypatch.setattr(storage, "opened_at", property(unreadable, storage.opened_at.fset))
    breaker = InstanceBreaker(service="s", instance="p", fail_max=2, reset_timeout=60)
    late = breaker.allow()
    call(breaker, failed=True)
    call(breaker, failed=True)
    assert breaker.state == "open"
    assert breaker.seconds_until_trial() > 0 and breaker.allow() is None
    breaker.record(late, failed=True)     # a late outcome while open


def test_half_open_lets_one_trial_through_and_its_outcome_decides() -> None:
    clock = FakeClock()
    breaker = opened(clock, reset_timeout=5)
    clock.now = 5.0
    trial = breaker.allow()
    assert trial is not None and trial.trial
    assert breaker.allow() is None        # nobody else while it is in flight
    breaker.record(trial, failed=True)
    assert breaker.state == "open" and breaker.seconds_until_trial() == 5.0
    clock.now = 10.0
    call(breaker, failed=False)
    assert breaker.state == "closed"
    assert breaker.allow() is not None and breaker.allow() is not None


def test_a_cancelled_trial_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = opened(clock, reset_timeout=5)
    clock.now = 5.0
    breaker.release(breaker.allow())
    assert breaker.allow() is not None and breaker.state == "half-open"


def test_every_state_change_is_counted_and_shown() -> None:
    instance = "metrics"

    def transitions(state: str) -> float:
        return REGISTRY.get_sample_value("portico_breaker_transitions_total",
                                         {"service": "s", "instance": instance,
                                          "state": state}) or 0.0

    def shown() -> float:
        return REGISTRY.get_sample_value("portico_breaker_state",
                                         {"service": "s", "instance": instance})

    before = {state: transitions(state) for state in ("open", "half-open", "closed")}
    clock = FakeClock()
    breaker = opened(clock, instance=instance)
    assert shown() == 2
    clock.now = 5.0
    trial = breaker.allow()
    assert shown() == 1
    breaker.record(trial, failed=False)
    assert shown() == 0
    assert {state: transitions(state) - before[state] for state in before} == \
        {"open": 1, "half-open": 1, "closed": 1}


def half_open_with_a_late_call(clock: FakeClock):
    """A breaker (fail_max 2) whose trial is in flight, and a call let through before it opened
    that has not ended yet: (breaker, late ticket, trial ticket)."""
    breaker = InstanceBreaker(service="s", instance="late", fail_max=2, reset_timeout=5,
                              clock=clock)
    late = breaker.allow()
    call(breaker, failed=True)
    call(breaker, failed=True)
    clock.now += 5
    trial = breaker.allow()
    assert breaker.state == "half-open" and trial is not None and trial.trial
    return breaker, late, trial


def test_a_call_from_before_the_breaker_opened_cannot_close_it() -> None:
    breaker, late, trial = half_open_with_a_late_call(FakeClock())
    breaker.record(late, failed=False)
    assert breaker.state == "half-open"
    assert breaker.allow() is None        # and the trial is still the one in flight
    breaker.record(trial, failed=True)
    assert breaker.state == "open"


def test_a_call_from_before_the_breaker_opened_cannot_reopen_it() -> None:
    breaker, late, trial = half_open_with_a_late_call(FakeClock())
    breaker.record(late, failed=True)
    assert breaker.state == "half-open" and breaker.allow() is None
    breaker.record(trial, failed=False)
    assert breaker.state == "closed"


def test_a_cancelled_call_from_before_the_breaker_opened_keeps_the_trial_slot() -> None:
    breaker, late, trial = half_open_with_a_late_call(FakeClock())
    breaker.release(late)
    assert breaker.allow() is None


def test_a_failure_from_an_earlier_closed_epoch_does_not_count_in_the_new_one() -> None:
    breaker, late, trial = half_open_with_a_late_call(FakeClock())
    breaker.record(trial, failed=False)
    assert breaker.state == "closed"
    breaker.record(late, failed=True)
    call(breaker, failed=True)            # the first failure of this epoch, of fail_max 2
    assert breaker.state == "closed"


def test_a_success_from_an_earlier_closed_epoch_does_not_reset_the_new_ones_count() -> None:
    breaker, late, trial = half_open_with_a_late_call(FakeClock())
    breaker.record(trial, failed=False)
    call(breaker, failed=True)
    breaker.record(late, failed=False)
    call(breaker, failed=True)            # the second failure in a row of this epoch
    assert breaker.state == "open"
