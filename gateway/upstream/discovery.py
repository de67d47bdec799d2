"""Discovery of a service's instances from a `dns:` target, for the gateway's own pool.

The gateway keeps a channel, a breaker and a health watch per instance, so it resolves the name
itself rather than leaving it to grpc: every `interval` (2 s), and at once when an instance's
health watch breaks. New addresses become instances, addresses no longer named are closed. A
failed or empty lookup changes nothing (the last set is kept, so a DNS outage never empties a
pool), and is logged once per outage.

Lookups use dnspython's asyncio resolver: it runs on the event loop, is cancelled cleanly by its
time bound, and can ask the DNS server a `dns://authority/` target names. (asyncio's
getaddrinfo would consult /etc/hosts too, but runs in a thread that a time bound cannot stop, so
a hung system resolver would pile up threads; and it cannot ask another server.) Without an
authority the servers and search domains of /etc/resolv.conf are used, as grpc's own resolver
does; /etc/hosts is not read, so list such hosts as host:port instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from gateway.upstream.pool import ServicePool
from services.common.addresses import DnsTarget, dns_target_of, join_host_port

log = logging.getLogger("portico.gateway.upstream.discovery")

# Wakes closer together than this (several instances breaking at once) make one lookup.
MIN_SPACING_SECONDS = 0.1


@dataclass(frozen=True)
class DiscoveryConfig:
    """How often a dns: target is resolved, and the bound on one lookup."""

    interval: float = 2.0
    timeout: float = 1.0


class LookupFailed(Exception):
    """The name could not be resolved (timeout, no server answered, no address)."""


class DnsResolver:
    """Resolves a DnsTarget to `address:port` strings (A and AAAA records), within `timeout`."""

    def __init__(self, target: DnsTarget, *, timeout: float) -> None:
        self.target = target
        self._timeout = timeout
        if target.authority is None:
            try:
                self._resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration as error:
                raise ValueError(f"{target.text}: no DNS server is configured in "
                                 "/etc/resolv.conf; name one as dns://server:53/...") from error
            self._search = True
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [target.authority[0]]
            self._resolver.port = target.authority[1]
            self._search = False
        self._resolver.lifetime = self._resolver.timeout = timeout

    async def resolve(self) -> list[str]:
        """The addresses the name has now, sorted; LookupFailed when there are none."""
        name = self.target.name
        with contextlib.suppress(ValueError):
            return [join_host_port(str(ipaddress.ip_address(name)), self.target.port)]
        try:
            async with asyncio.timeout(self._timeout):
                found = await asyncio.gather(self._query(name, "A"), self._query(name, "AAAA"))
        except TimeoutError:
            raise LookupFailed(f"no answer within {self._timeout:g}s") from None
        except dns.exception.DNSException as error:
            raise LookupFailed(str(error) or type(error).__name__) from None
        addresses = sorted({address for records in found for address in records})
        if not addresses:
            raise LookupFailed("the name has no address")
        return [join_host_port(address, self.target.port) for address in addresses]

    async def _query(self, name: str, rdtype: str) -> list[str]:
        try:
            answer = await self._resolver.resolve(name, rdtype, search=self._search)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return []
        return [record.address for record in answer]


def open_pool(label: str, service: str, addresses: list[str], *, discovery: DiscoveryConfig,
              **pool_options) -> tuple[ServicePool, Discovery | None]:
    """The pool of a service's instances, and its Discovery when `addresses` is a dns: target
    (then every instance's certificate is checked against the target's name)."""
    target = dns_target_of(addresses)
    if target is None:
        return ServicePool(service, addresses, label=label, **pool_options), None
    pool = ServicePool(service, [], label=label, server_name=target.name, **pool_options)
    resolver = DnsResolver(target, timeout=discovery.timeout)
    return pool, Discovery(pool, resolver, interval=discovery.interval)


class Discovery:
    """Keeps a pool's instances those its dns: target resolves to."""

    def __init__(self, pool: ServicePool, resolver: DnsResolver, *, interval: float) -> None:
        self.pool = pool
        self._resolver = resolver
        self._interval = interval
        self._wake = asyncio.Event()
        self._failing = False
        self._task: asyncio.Task | None = None
        pool.on_broken = self.wake

    def wake(self) -> None:
        """Resolve again now (an instance's health watch broke)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"discovery {self.pool.label}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:
                log.exception("instance discovery failed", extra={"upstream": self.pool.label})
            await asyncio.sleep(MIN_SPACING_SECONDS)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval - MIN_SPACING_SECONDS):
                    await self._wake.wait()

    async def refresh(self) -> None:
        """One lookup, and the pool brought in line with its answer (kept as is on failure)."""
        try:
            addresses = await self._resolver.resolve()
        except LookupFailed as error:
            if not self._failing:
                log.warning("instance lookup failed; keeping the instances known", extra={
                    "upstream": self.pool.label, "target": self._resolver.target.text,
                    "error": str(error), "instances": self.pool.addresses})
            self._failing = True
            return
        if self._failing:
            log.info("instance lookup answers again", extra={
                "upstream": self.pool.label, "target": self._resolver.target.text})
        self._failing = False
        self.pool.update(addresses)
