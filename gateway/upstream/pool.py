"""One grpc.aio channel per instance, actively health-checked, and round-robin over the
instances that are both healthy and not held back by their circuit breaker. The instances are
a fixed list, or those discovery finds (`update`): new ones are added, gone ones closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import metrics
from gateway.upstream.breaker import InstanceBreaker, Ticket
from services.common.keepalive import CLIENT_KEEPALIVE

log = logging.getLogger("portico.gateway.upstream.pool")

_CHANNEL_OPTIONS = [
    # Retries are the gateway's own (tenacity, on another instance, within a budget).
    ("grpc.enable_retries", 0),
    # A dead peer found within about 3 s, even one that vanished without a reset.
    *CLIENT_KEEPALIVE,
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.http2.bdp_probe", 0),
]
# An instance that left keeps its channel this long for the calls still on it.
CLOSE_GRACE_SECONDS = 5.0

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
    # Set once the instance left the pool and its channel is closed: counts nothing more.
    gone: bool = False

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
    """The instances of one service (by its full gRPC name) and a round-robin over them.
    `server_name`, when given, is the name every instance's certificate is checked against
    (a dns: target's name); otherwise each is checked against its own address."""

    def __init__(self, service: str, addresses: Sequence[str], *, label: str,
                 fail_max: int, reset_timeout: float, credentials: grpc.ChannelCredentials,
                 server_name: str | None = None) -> None:
        self.service = service
        self.label = label
        self._breaker_settings = (fail_max, reset_timeout)
        self._credentials = credentials
        self._options = _CHANNEL_OPTIONS + (
            [("grpc.ssl_target_name_override", server_name)] if server_name else [])
        self.instances: list[Instance] = [self._instance(address) for address in addresses]
        self._next = 0
        self._interval: float | None = None     # set when health checks start
        self._watchers: dict[Instance, asyncio.Task] = {}
        self._leaving: dict[Instance, asyncio.Task] = {}   # left, channel closing
        # Told when an instance's health watch breaks (discovery then resolves again at once).
        self.on_broken: Callable[[], None] = lambda: None

    def _instance(self, address: str) -> Instance:
        # Mutual TLS: the instance is checked against the CA and its address (an IP or host
        # name SAN) or the server name; `credentials` carry the gateway's own certificate.
        fail_max, reset_timeout = self._breaker_settings
        return Instance(self.label, address, grpc.aio.secure_channel(
            address, self._credentials, options=self._options), InstanceBreaker(
            service=self.label, instance=address, fail_max=fail_max, reset_timeout=reset_timeout))

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

    @property
    def addresses(self) -> list[str]:
        return [instance.address for instance in self.instances]

    def update(self, addresses: Iterable[str]) -> tuple[list[str], list[str]]:
        """Makes the instances those at `addresses`: adds the new ones, and closes those no
        longer named once their calls had time to finish. Returns (added, removed)."""
        wanted = list(dict.fromkeys(addresses))
        current = {instance.address: instance for instance in self.instances}
        added = [address for address in wanted if address not in current]
        removed = [address for address in current if address not in wanted]
        for address in removed:
            self._retire(current[address])
        for address in added:
            instance = self._instance(address)
            self.instances.append(instance)
            if self._interval is not None:
                self._start_watch(instance)
        if added or removed:
            log.info("instances changed", extra={"upstream": self.label, "added": added,
                                                 "removed": removed, "instances": self.addresses})
        return added, removed

    def _retire(self, instance: Instance) -> None:
        self.instances.remove(instance)
        instance.breaker.retire()
        watcher = self._watchers.pop(instance, None)
        if watcher is not None:
            watcher.cancel()
        self._leaving[instance] = asyncio.create_task(
            self._close(instance), name=f"close {instance.address}")

    async def _close(self, instance: Instance, grace: float = CLOSE_GRACE_SECONDS) -> None:
        await instance.channel.close(grace)
        instance.gone = True
        self._leaving.pop(instance, None)
        if instance.address not in self.addresses:   # it may have come back meanwhile
            metrics.forget_instance(self.label, instance.address)

    def start_health_checks(self, interval: float) -> None:
        self._interval = interval
        for instance in self.instances:
            self._start_watch(instance)

    def _start_watch(self, instance: Instance) -> None:
        self._watchers[instance] = asyncio.create_task(
            self._watch(instance, self._interval), name=f"health {instance.address}")

    async def _watch(self, instance: Instance, interval: float) -> None:
        """Follows the instance's grpc.health.v1 Watch stream: NOT_SERVING (a graceful stop)
        is seen at once; a broken stream means unreachable until a new one answers."""
        stub = health_pb2_grpc.HealthStub(instance.channel)
        request = health_pb2.HealthCheckRequest(service=self.service)
        reopen = False
        while True:
            try:
                # A stream that was answering and ended may have been closed by the server's
                # maximum connection age: a new one, on a new connection, answers at once.
                answered = await self._follow(instance, stub, request,
                                              first_within=interval if reopen else None)
            except grpc.aio.AioRpcError:   # UNIMPLEMENTED: a server without Watch
                await self._poll(instance, stub, request, interval)
                return
            reopen = answered
            if answered:
                continue
            if instance.healthy is not False:
                self.on_broken()
            self._set_health(instance, False)
            await asyncio.sleep(interval)

    async def _follow(self, instance: Instance, stub, request, *,
                      first_within: float | None) -> bool:
        """Follows one Watch stream until it ends; whether it gave any answer. Raises only
        UNIMPLEMENTED."""
        call = stub.Watch(request)
        answered = False
        try:
            async with asyncio.timeout(first_within) as scope:
                async for answer in call:
                    if not answered:
                        answered = True
                        scope.reschedule(None)
                    self._set_health(instance, answer.status == _SERVING)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise
        except TimeoutError:
            call.cancel()
        return answered

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
        leaving = list(self._leaving)
        tasks = [*self._watchers.values(), *self._leaving.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(i.channel.close() for i in [*self.instances, *leaving]))
