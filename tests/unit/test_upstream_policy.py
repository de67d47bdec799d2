"""The retry budget and what may be retried, without I/O (the breaker: test_breaker.py)."""

from __future__ import annotations

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
