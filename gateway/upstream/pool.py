"""One grpc.aio channel per configured instance, actively health-checked, and round-robin over
the instances that are both healthy and not held back by their circuit breaker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import metrics
from gateway.upstream.breaker import InstanceBreaker, Ticket

log = logging.getLogger("portico.gateway.upstream.pool")

_CHANNEL_OPTIONS = [
    # Retries are the gateway's own (tenacity, on another instance, within a budget).
    ("grpc.enable_retries", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.http2.bdp_probe", 0),
]


_SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(eq=False)
class Instance:
    """One instance of a service: its channel, breaker and last known health."""

    service: str
    address: str
    channel: grpc.aio.Channel
    breaker: InstanceBreaker
    # None until the first health answer: usable, but not yet counted as ready.
    healthy: bool | None = None
    stubs: dict[type, object] = field(default_factory=dict)

    def stub(self, stub_class: type) -> object:
        stub = self.stubs.get(stub_class)
        if stub is None:
            stub = self.stubs[stub_class] = stub_class(self.channel)
        return stub


class NoInstanceAvailable(Exception):
    """Every instance of a service is unhealthy or held back by its breaker."""

    def __init__(self, service: str, retry_after: float) -> None:
        super().__init__(f"no usable instance of {service}")
        self.service = service
        self.retry_after = retry_after


class ServicePool:
    """The instances of one service (by its full gRPC name) and a round-robin over them."""

    def __init__(self, service: str, addresses: Sequence[str], *, label: str,
                 fail_max: int, reset_timeout: float,
                 credentials: grpc.ChannelCredentials) -> None:
        self.service = service
        self.label = label
        self.instances = [
            # Mutual TLS: the instance is checked against the CA and its address (an IP or host
            # name SAN); `credentials` carry the gateway's own certificate.
            Instance(label, address, grpc.aio.secure_channel(address, credentials,
                                                             options=_CHANNEL_OPTIONS),
                     InstanceBreaker(service=label, instance=address, fail_max=fail_max,
                                     reset_timeout=reset_timeout))
            for address in addresses
        ]
        self._next = 0
        self._watchers: list[asyncio.Task] = []

    def pick(self, *, exclude: Sequence[Instance] = ()) -> tuple[Instance, Ticket]:
        """The next usable instance in turn, preferring ones not in `exclude` (tried already),
        and the ticket its breaker let the call through with (which claims the trial slot when
        that breaker is not closed)."""
        count = len(self.instances)
        for avoid in (exclude, ()):
            for step in range(count):
                instance = self.instances[(self._next + step) % count]
                if instance in avoid or instance.healthy is False:
                    continue
                ticket = instance.breaker.allow()
                if ticket is not None:
                    self._next = (self._next + step + 1) % count
                    return instance, ticket
            if not exclude:
                break
        raise NoInstanceAvailable(self.label, self._retry_after())

    def _retry_after(self) -> float:
        waits = [i.breaker.seconds_until_trial() for i in self.instances if i.healthy is not False]
        return min(waits) if waits else 1.0

    @property
    def ready(self) -> bool:
        return any(i.healthy for i in self.instances)

    def start_health_checks(self, interval: float) -> None:
        for instance in self.instances:
            self._watchers.append(asyncio.create_task(
                self._watch(instance, interval), name=f"health {instance.address}"))

    async def _watch(self, instance: Instance, interval: float) -> None:
        """Follows the instance's grpc.health.v1 Watch stream: NOT_SERVING (a graceful stop)
        is seen at once; a broken stream means unreachable until a new one answers."""
        stub = health_pb2_grpc.HealthStub(instance.channel)
        request = health_pb2.HealthCheckRequest(service=self.service)
        while True:
            try:
                async for answer in stub.Watch(request):
                    self._set_health(instance, answer.status == _SERVING)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                    await self._poll(instance, stub, request, interval)
                    return
            self._set_health(instance, False)
            await asyncio.sleep(interval)

    async def _poll(self, instance: Instance, stub, request, interval: float) -> None:
        """For servers without Watch: Check every interval."""
        while True:
            try:
                answer = await stub.Check(request, timeout=interval)
                healthy = answer.status == _SERVING
            except grpc.aio.AioRpcError:
                healthy = False
            self._set_health(instance, healthy)
            await asyncio.sleep(interval)

    def _set_health(self, instance: Instance, healthy: bool) -> None:
        if instance.healthy != healthy:
            log.log(logging.INFO if healthy else logging.WARNING, "instance health changed",
                    extra={"upstream": self.label, "instance": instance.address,
                           "healthy": healthy})
        instance.healthy = healthy
        metrics.UPSTREAM_HEALTHY.labels(service=self.label, instance=instance.address).set(
            1 if healthy else 0)

    async def close(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(i.channel.close() for i in self.instances))
