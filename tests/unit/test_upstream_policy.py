"""Retry budget and circuit breaker state machines, without I/O."""

from __future__ import annotations

import time

from gateway.upstream.breaker import InstanceBreaker
from gateway.upstream.call import CallPolicy, RetryBudget, _retryable


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_allows_a_share_of_recent_requests() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.25, 0.0, clock=clock)
    while budget.withdraw():      # spend the initial reserve
        pass
    for _ in range(10):
        budget.deposit()
    assert [budget.withdraw() for _ in range(3)] == [True, True, False]   # 10 x 0.25 = 2.5


def test_the_budget_refills_slowly_on_a_quiet_gateway() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.0, 5.0, clock=clock)
    while budget.withdraw():
        pass
    clock.now += 1.0
    assert sum(budget.withdraw() for _ in range(10)) == 5


def test_a_breaker_opens_after_consecutive_server_failures_only() -> None:
    breaker = InstanceBreaker(service="s", instance="a", fail_max=3, reset_timeout=60)
    for _ in range(2):
        breaker.record(failed=True)
    breaker.record(failed=False)          # a success (or a client error) resets the count
    for _ in range(2):
        breaker.record(failed=True)
    assert breaker.state == "closed" and breaker.allow()
    breaker.record(failed=True)
    assert breaker.state == "open" and not breaker.allow()
    assert 0 < breaker.seconds_until_trial() <= 60


def test_half_open_lets_one_trial_through_and_its_outcome_decides() -> None:
    breaker = InstanceBreaker(service="s", instance="b", fail_max=1, reset_timeout=0.05)
    breaker.record(failed=True)
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow()                # the trial
    assert not breaker.allow()            # nobody else while it is in flight
    breaker.record(failed=True)
    assert breaker.state == "open"
    time.sleep(0.06)
    assert breaker.allow()
    breaker.record(failed=False)
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_cancelled_trial_frees_the_slot() -> None:
    breaker = InstanceBreaker(service="s", instance="c", fail_max=1, reset_timeout=0.05)
    breaker.record(failed=True)
    time.sleep(0.06)
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()


def test_what_may_be_retried() -> None:
    import grpc

    class Failure(grpc.aio.AioRpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            super().__init__(code, None, None)

    write, idempotent, read = (CallPolicy(False, False), CallPolicy(True, False),
                               CallPolicy(True, True))
    unavailable, deadline = Failure(grpc.StatusCode.UNAVAILABLE), \
        Failure(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert not _retryable(unavailable, write)
    assert _retryable(unavailable, idempotent) and not _retryable(deadline, idempotent)
    assert _retryable(deadline, read)
    assert not _retryable(Failure(grpc.StatusCode.NOT_FOUND), read)
    assert not _retryable(ValueError(), read)
