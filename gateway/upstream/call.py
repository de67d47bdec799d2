"""One upstream call: deadline -> retry -> circuit breaker -> round-robin pick -> stub.

Retries (tenacity, exponential backoff with jitter) happen only where repeating is safe: on
UNAVAILABLE for idempotent calls (and POSTs that carry an idempotency key), and on
DEADLINE_EXCEEDED for reads. Each try goes to another instance when there is one, all tries fit
in the request's deadline, and a retry budget caps retries to a share of recent traffic so a
failing fleet is not hammered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from gateway import metrics
from gateway.upstream.discovery import Discovery, DiscoveryConfig, open_pool
from gateway.upstream.pool import Instance, ServicePool
from gateway.upstream.tracing import attempt as traced_try

REQUEST_ID_KEY = "x-request-id"
AUTHORIZATION_KEY = "authorization"
SERVER_SIDE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                         grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


@dataclass(frozen=True)
class CallPolicy:
    """What may be repeated: `retry_unavailable` for idempotent calls, `read` for reads (which
    may also be repeated after a try's own deadline)."""

    retry_unavailable: bool
    read: bool


class RetryBudget:
    """Finagle-style budget: each request deposits `ratio` of a retry, each retry withdraws one,
    and `min_per_second` retries are always allowed so a quiet gateway can still retry."""

    def __init__(self, ratio: float, min_per_second: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ratio = ratio
        self._min_per_second = min_per_second
        self._cap = max(10.0, min_per_second * 10)
        self._clock = clock
        self._balance = self._cap
        self._last = clock()

    def deposit(self) -> None:
        self._balance = min(self._cap, self._balance + self._ratio)

    def withdraw(self) -> bool:
        now = self._clock()
        self._balance = min(self._cap, self._balance + (now - self._last) * self._min_per_second)
        self._last = now
        if self._balance < 1:
            return False
        self._balance -= 1
        return True


@dataclass(frozen=True)
class BreakerConfig:
    fail_max: int
    reset_timeout: float


class Upstream:
    """Calls the services: one ServicePool per service label ("user", "product", "order").
    `targets` maps a label to its full gRPC service name and instance addresses (host:port
    list, or a dns: target that `discovery` resolves); the channels are made by `start`, inside
    the event loop that will use them."""

    def __init__(self, targets: dict[str, tuple[str, Sequence[str]]], *, breaker: BreakerConfig,
                 timeout: float, max_attempts: int, initial_backoff: float, max_backoff: float,
                 budget: RetryBudget, credentials: grpc.ChannelCredentials,
                 discovery: DiscoveryConfig = DiscoveryConfig()) -> None:
        self._targets = targets
        self._discovery = discovery
        self._discoveries: list[Discovery] = []
        self._credentials = credentials
        self._breaker = breaker
        self.pools: dict[str, ServicePool] = {}
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._wait = wait_exponential_jitter(multiplier=initial_backoff, max=max_backoff,
                                             jitter=initial_backoff)
        self._budget = budget

    async def call(self, service: str, stub_class: type, method: str, request: Any, *,
                   policy: CallPolicy, request_id: str, token: str | None = None) -> Any:
        """Makes the call, retrying where the policy allows; raises grpc.aio.AioRpcError with
        the last failure, or NoInstanceAvailable when no instance can be tried at all. `token`,
        the caller's access token, goes along so the service applies the end user's rights."""
        pool = self.pools[service]
        deadline = time.monotonic() + self._timeout
        metadata = ((REQUEST_ID_KEY, request_id),) if token is None else \
            ((REQUEST_ID_KEY, request_id), (AUTHORIZATION_KEY, f"Bearer {token}"))
        tried: list[Instance] = []
        self._budget.deposit()
        try:
            # Most calls succeed at once: they never pay for building a retry loop.
            return await self._once(pool, stub_class, method, request, tried=tried,
                                    timeout=self._try_timeout(deadline, self._max_attempts,
                                                              policy), metadata=metadata)
        except grpc.aio.AioRpcError as error:
            if self._max_attempts == 1 or not _retryable(error, policy):
                raise
            first_failure: BaseException | None = error

        def out_of_time(state: RetryCallState) -> bool:
            return time.monotonic() + self._wait(state) >= deadline

        def over_budget(state: RetryCallState) -> bool:
            allowed = self._budget.withdraw()
            metrics.UPSTREAM_RETRIES.labels(
                service=service, outcome="retried" if allowed else "budget_exhausted").inc()
            return not allowed

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda error: _retryable(error, policy)), wait=self._wait,
            reraise=True, stop=stop_after_attempt(self._max_attempts) | out_of_time | over_budget)
        async for attempt in retrying:
            with attempt:
                if first_failure is not None:
                    # Attempt 1 is the try made above: tenacity decides on it like on any other.
                    failure, first_failure = first_failure, None
                    raise failure
                attempts_left = self._max_attempts - attempt.retry_state.attempt_number + 1
                return await self._once(pool, stub_class, method, request, tried=tried,
                                        timeout=self._try_timeout(deadline, attempts_left, policy),
                                        metadata=metadata)

    @staticmethod
    def _try_timeout(deadline: float, attempts_left: int, policy: CallPolicy) -> float:
        remaining = max(deadline - time.monotonic(), 0.001)
        # A read that hangs on one instance keeps time for a try on another.
        return max(remaining / attempts_left, 0.05) if policy.read else remaining

    @staticmethod
    async def _once(pool: ServicePool, stub_class: type, method: str, request: Any, *,
                    tried: list[Instance], timeout: float,
                    metadata: Sequence[tuple[str, str]]) -> Any:
        instance, ticket = pool.pick(exclude=tried)
        tried.append(instance)
        try:
            # Traces: this try's span, and its traceparent in the metadata (tracing.py).
            with traced_try(pool.service, instance.address, method, len(tried) - 1,
                            metadata) as sent:
                response = await getattr(instance.stub(stub_class), method)(
                    request, timeout=timeout, metadata=sent)
        except grpc.aio.AioRpcError as error:
            instance.breaker.record(ticket, failed=error.code() in SERVER_SIDE)
            _count(pool, instance, error.code().name)
            raise
        except asyncio.CancelledError:
            instance.breaker.release(ticket)
            _count(pool, instance, "CANCELLED")
            raise
        except BaseException:
            # Anything else (a request that would not serialise): no outcome for the breaker,
            # but the trial slot must not stay claimed, or the instance is never tried again.
            instance.breaker.release(ticket)
            raise
        instance.breaker.record(ticket, failed=False)
        _count(pool, instance, "OK")
        return response

    def ready(self) -> dict[str, bool]:
        return {name: pool.ready for name, pool in self.pools.items()}

    def start(self, health_interval: float) -> None:
        for label, (service, addresses) in self._targets.items():
            pool, discovery = open_pool(
                label, service, list(addresses), discovery=self._discovery,
                fail_max=self._breaker.fail_max, reset_timeout=self._breaker.reset_timeout,
                credentials=self._credentials)
            pool.start_health_checks(health_interval)
            if discovery is not None:
                discovery.start()
                self._discoveries.append(discovery)
            self.pools[label] = pool

    async def close(self) -> None:
        await asyncio.gather(*(discovery.stop() for discovery in self._discoveries))
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))


def _retryable(error: BaseException, policy: CallPolicy) -> bool:
    if not isinstance(error, grpc.aio.AioRpcError):
        return False
    code = error.code()
    return (code == grpc.StatusCode.UNAVAILABLE and policy.retry_unavailable) or \
        (code == grpc.StatusCode.DEADLINE_EXCEEDED and policy.read)


def _count(pool: ServicePool, instance: Instance, code: str) -> None:
    if instance.gone:   # left the pool, its series removed: a late outcome must not revive them
        return
    metrics.child(metrics.UPSTREAM_CALLS, pool.label, instance.address, code).inc()
