"""The gateway's pool follows a dns: target: instances on 127.0.0.2, .3, .4 (one port), a DNS
server of the test's own answering the name with the addresses the test sets. New instances
are used within the discovery interval, removed ones closed, a broken health watch makes the
pool resolve at once, and a DNS outage keeps the instances known."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from gateway.upstream.call import BreakerConfig, CallPolicy, RetryBudget, Upstream
from gateway.upstream.discovery import DiscoveryConfig
from portico.product.v1 import product_pb2, product_pb2_grpc
from scripts.devstack.servers import find_free_port
from services.common.mtls import channel_credentials
from services.common.server import ConnectionAge
from tests.fleet import fleet as serve_fleet
from tests.fleet import serve_at, tls_naming, within
from tests.integration.gateway.conftest import SCRAPER, gateway_client, make_token, settings_for

NAME = "product.portico.test"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
READ = CallPolicy(retry_unavailable=True, read=True)
SERVICE = "portico.product.v1.ProductService"


class Named(product_pb2_grpc.ProductServiceServicer):
    """Answers GetProduct with its own address as the product id."""

    def __init__(self, host: str) -> None:
        self.host = host

    async def GetProduct(self, request, context):
        return product_pb2.GetProductResponse(product=product_pb2.Product(id=self.host))


def fleet() -> contextlib.AbstractAsyncContextManager:
    """The DNS server, the instances' port, and a server per host of HOSTS."""
    return serve_fleet(HOSTS, lambda host: (
        product_pb2_grpc.add_ProductServiceServicer_to_server, Named(host), SERVICE), name=NAME)


@contextlib.asynccontextmanager
async def upstream_of(target: str, *, interval: float,
                      timeout: float = 0.5) -> AsyncIterator[Upstream]:
    upstream = Upstream(
        {"product": (SERVICE, [target])}, breaker=BreakerConfig(fail_max=3, reset_timeout=60),
        timeout=2, max_attempts=3, initial_backoff=0.001, max_backoff=0.01,
        budget=RetryBudget(1.0, 100.0),
        credentials=channel_credentials(tls_naming("gateway", [])),
        discovery=DiscoveryConfig(interval=interval, timeout=timeout))
    upstream.start(0.05)
    try:
        yield upstream
    finally:
        await upstream.close()


async def answered_by(upstream: Upstream) -> str:
    answer = await upstream.call("product", product_pb2_grpc.ProductServiceStub, "GetProduct",
                                 product_pb2.GetProductRequest(id="P1"), policy=READ,
                                 request_id="discovery-test")
    return answer.product.id


def addresses(upstream: Upstream) -> set[str]:
    return set(upstream.pools["product"].addresses)


async def test_a_new_instance_is_used_within_the_interval_and_a_removed_one_is_closed() -> None:
    async with fleet() as (dns, port, _):
        dns.set(NAME, HOSTS[:1])
        async with upstream_of(dns.target(NAME, port), interval=2.0) as upstream:
            await within(3, lambda: addresses(upstream) == {f"{HOSTS[0]}:{port}"}, "first set")
            assert await answered_by(upstream) == HOSTS[0]

            dns.set(NAME, HOSTS[:2])
            seen: set[str] = set()

            async def second_used() -> bool:
                seen.add(await answered_by(upstream))
                return HOSTS[1] in seen
            took = await within(3.5, second_used, "the new instance answers")
            print(f"new instance used after {took:.2f}s")

            dns.set(NAME, HOSTS[1:2])
            took = await within(3.5, lambda: addresses(upstream) == {f"{HOSTS[1]}:{port}"},
                                "the removed instance leaves the pool")
            print(f"removed instance dropped after {took:.2f}s")
            assert {await answered_by(upstream) for _ in range(10)} == {HOSTS[1]}


async def test_a_broken_health_watch_resolves_at_once() -> None:
    async with fleet() as (dns, port, servers):
        dns.set(NAME, HOSTS[:2])
        # An interval no test waits for: only the broken watch can make the pool look again.
        async with upstream_of(dns.target(NAME, port), interval=60) as upstream:
            pool = upstream.pools["product"]
            await within(3, lambda: len(pool.instances) == 2 and all(
                i.healthy for i in pool.instances), "both instances healthy")
            dns.set(NAME, [HOSTS[1], HOSTS[2]])
            await servers[HOSTS[0]].server.stop(0)   # a crash: no NOT_SERVING first
            took = await within(2, lambda: addresses(upstream) == {
                f"{HOSTS[1]}:{port}", f"{HOSTS[2]}:{port}"}, "re-resolved on the broken watch")
            print(f"re-resolved {took:.2f}s after the crash")


async def test_a_dns_outage_keeps_the_instances_known(caplog) -> None:
    async with fleet() as (dns, port, _):
        dns.set(NAME, HOSTS[:2])
        async with upstream_of(dns.target(NAME, port), interval=0.2, timeout=0.1) as upstream:
            await within(3, lambda: len(addresses(upstream)) == 2, "both instances known")
            caplog.set_level(logging.INFO, logger="portico.gateway.upstream.discovery")
            dns.answering = False
            # Three lookups (an A and an AAAA query each) go unanswered.
            await within(3, lambda: dns.unanswered >= 6, "three lookups unanswered")
            assert len(addresses(upstream)) == 2
            assert {await answered_by(upstream) for _ in range(6)} == set(HOSTS[:2])
            assert _lookups_failed(caplog) == 1   # logged once per outage

            dns.answering = True
            dns.set(NAME, HOSTS[2:])
            await within(3, lambda: addresses(upstream) == {f"{HOSTS[2]}:{port}"},
                         "the set after the outage")
            assert "instance lookup answers again" in caplog.text


def _lookups_failed(caplog) -> int:
    return sum(r.getMessage().startswith("instance lookup failed") for r in caplog.records)


async def test_metrics_and_admin_follow_the_instances(signing_key, redis_url) -> None:
    async with fleet() as (dns, port, _):
        dns.set(NAME, HOSTS[:2])
        settings = settings_for("127.0.0.1:1", signing_key, redis_url,
                                product_addrs=[dns.target(NAME, port)],
                                discovery_interval_seconds=0.2, rate_limit_enabled=False,
                                cache_enabled=False, metrics_networks=[SCRAPER])
        admin = {"Authorization": f"Bearer {make_token(signing_key[0], 'root', 'admin')}"}
        first, second = (f"{host}:{port}" for host in HOSTS[:2])

        async with gateway_client(settings) as http:
            async def listed() -> set[str]:
                answer = (await http.get("/admin/upstreams", headers=admin)).json()
                return {i["address"] for i in answer["product"] if i["healthy"]}
            await within(3, lambda: _equal(listed(), {first, second}), "both listed")
            assert (await http.get("/products/P1")).status_code == 200
            text = (await http.get("/metrics")).text
            assert f'instance="{first}"' in text and f'instance="{second}"' in text

            dns.set(NAME, HOSTS[1:2])
            await within(3, lambda: _equal(listed(), {second}), "the first one gone")
            # Its channel is closed after a grace for the calls still on it, then its series go.
            await within(8, lambda: _gone(http, first), "its series removed")
            text = (await http.get("/metrics")).text
            assert f'portico_upstream_healthy{{instance="{second}",service="product"}} 1.0' \
                in text


async def _equal(found, expected) -> bool:
    return await found == expected


async def _gone(http, address: str) -> bool:
    return f'instance="{address}"' not in (await http.get("/metrics")).text


async def test_a_servers_connection_age_never_shows_its_instance_unhealthy() -> None:
    """The server closes each connection after its age and grace, the health watch stream
    with it: the pool opens a new one at once instead of marking the instance down."""
    port = find_free_port(HOSTS[:1])
    server = await serve_at(
        [(product_pb2_grpc.add_ProductServiceServicer_to_server, Named(HOSTS[0]), SERVICE)],
        host=HOSTS[0], port=port, name=NAME,
        connection_age=ConnectionAge(seconds=0.5, grace_seconds=0.3))
    try:
        async with upstream_of(f"{HOSTS[0]}:{port}", interval=2.0) as upstream:
            pool = upstream.pools["product"]
            await within(3, lambda: pool.ready, "healthy")
            seen = []
            original = pool._set_health
            pool._set_health = lambda instance, healthy: (seen.append(healthy),
                                                          original(instance, healthy))
            for _ in range(30):   # 3 s: several connection lifetimes
                assert await answered_by(upstream) == HOSTS[0]
                await asyncio.sleep(0.1)
            assert len(seen) >= 2 and all(seen), seen   # watches re-opened, never down
    finally:
        await server.stop(0)
