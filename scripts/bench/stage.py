"""The stage the scenarios play on: the stack in its benchmark profile, and its seed data.

The profile: one gateway worker, two instances of each service, private PostgreSQL (no fsync),
Redis and SecantusDB on free ports, the first admin from the settings. Every edge policy stays
on, with limits high enough that the rate limiter runs on every request but never refuses;
X-Forwarded-For is believed from 127.0.0.1, so the overload scenarios' connections are as many
clients (the limits are per client address). PORTICO_MAX_IN_FLIGHT is not set: the gateway's
own default is measured (set it in the environment to try another).
Logging is at WARNING with the access log off, for the gateway and the services alike: writing
a log line per request costs CPU that Envoy (run without an access log) would not pay.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx

from portico.product.v1 import product_pb2, product_pb2_grpc
from portico.user.v1 import user_pb2, user_pb2_grpc
from scripts.devstack.stack import Stack, StackConfig
from services.common.clients import service_channel
from services.common.identity import bearer_metadata

ADMIN_EMAIL = "bench-admin@portico.test"
ADMIN_PASSWORD = "bench-admin-password-1"
CUSTOMER_PASSWORD = "bench-customer-password-1"
SEED_PRICE = "10.00"

BENCH_SETTINGS = {
    "PORTICO_ADMIN_EMAIL": ADMIN_EMAIL,
    "PORTICO_ADMIN_PASSWORD": ADMIN_PASSWORD,
    "PORTICO_RATE_LIMIT_ENABLED": "true",
    "PORTICO_RATE_LIMIT_RATE": "1000000",
    "PORTICO_RATE_LIMIT_BURST": "1000000",
    "PORTICO_TRUSTED_PROXIES": "127.0.0.1/32",
    "PORTICO_LOGIN_RATE_LIMIT_RATE": "1000",
    "PORTICO_LOGIN_RATE_LIMIT_BURST": "1000",
    "PORTICO_SIGNUP_RATE_LIMIT_RATE": "1000",
    "PORTICO_SIGNUP_RATE_LIMIT_BURST": "1000",
    "PORTICO_CACHE_ENABLED": "true",
    "PORTICO_LOG_LEVEL": "WARNING",
    "PORTICO_ACCESS_LOG": "false",
}
# The groups of process_groups for the embedded databases, by their server's name.
_DATABASES = {"postgres": "PostgreSQL", "redis": "Redis", "secantus": "SecantusDB"}
# The benchmark always runs on databases of its own, whatever the environment names.
_EXTERNAL = ("PORTICO_DATABASE_URL", "PORTICO_REDIS_URL", "PORTICO_MONGODB_URI")


def start_stack(workdir: Path) -> Stack:
    """The stack in the benchmark profile, its state and logs under `workdir`."""
    for variable in _EXTERNAL:
        os.environ.pop(variable, None)
    # As root, PostgreSQL runs as `postgres`, which must be able to walk down to its data.
    workdir.chmod(0o755)
    config = StackConfig(state_dir=workdir / "state", gateway_port=0, gateway_workers=1,
                         instances=2, base_ports={"user": 0, "product": 0, "order": 0},
                         env=dict(BENCH_SETTINGS), log_dir=workdir / "logs",
                         fast_databases=True)
    return Stack(config).start()


def process_groups(stack: Stack, **others: int) -> dict[str, list[int]]:
    """The machine's processes by role, as the roots of their process trees: the gateways,
    the service instances, each database, the `others` (Envoy, the floor app) and this
    benchmark itself, whose children are the load generators."""
    groups: dict[str, list[int]] = {"gateway": [], "services": []}
    for child in stack.children.values():
        if child.process is not None:
            role = "gateway" if child.name.startswith("gateway") else "services"
            groups[role].append(child.process.pid)
    for server in stack.databases:
        if server.pid is not None:
            groups.setdefault(_DATABASES.get(server.name, server.name), []).append(server.pid)
    groups.update({name: [pid] for name, pid in others.items()})
    groups["load"] = [os.getpid()]
    return groups


def gateway_pid(stack: Stack) -> int:
    """The gateway's process: with one worker, uvicorn serves in `portico gateway` itself."""
    return stack.children["gateway"].process.pid


@dataclass(frozen=True)
class Catalogue:
    """What the scenarios use: ids, and tokens for an admin and a customer."""

    products: list[str]        # P0000.., ordered by popularity for the mix
    write_products: list[str]  # W000..: plenty of stock, ordered by the write scenario
    users: list[str]
    admin_token: str
    customer_token: str


def seed(stack: Stack, *, products: int, users: int, write_products: int = 10) -> Catalogue:
    """Creates the products and users straight over gRPC (the fastest way in: an internal job
    with a certificate of its own, acting as the admin), then signs the admin and one customer
    in through the gateway."""
    product_ids = [f"P{i:04d}" for i in range(products)]
    write_ids = [f"W{i:03d}" for i in range(write_products)]
    user_ids = asyncio.run(_seed(stack, product_ids, write_ids, users))
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as api:
        admin = _login(api, ADMIN_EMAIL, ADMIN_PASSWORD)
        customer = _login(api, _customer_email(0), CUSTOMER_PASSWORD)
    return Catalogue(product_ids, write_ids, user_ids, admin, customer)


def _customer_email(index: int) -> str:
    return f"bench-customer-{index:03d}@portico.test"


def _login(api: httpx.Client, email: str, password: str) -> str:
    answer = api.post("/auth/login", json={"email": email, "password": password})
    answer.raise_for_status()
    return answer.json()["access_token"]


async def _seed(stack: Stack, product_ids: list[str], write_ids: list[str],
                users: int) -> list[str]:
    job = stack.identity("bench-seed")
    products = service_channel(stack.addresses["product"], "portico.product.v1.ProductService",
                               job)
    people = service_channel(stack.addresses["user"], "portico.user.v1.UserService", job)
    limit = asyncio.Semaphore(16)
    # Sign-ups hash passwords, and each user instance hashes only so many at once (beyond,
    # an immediate UNAVAILABLE): a few at a time, and a refused one again after a pause.
    signups = asyncio.Semaphore(2 * len(stack.addresses["user"]))
    try:
        product_stub = product_pb2_grpc.ProductServiceStub(products)
        user_stub = user_pb2_grpc.UserServiceStub(people)
        admin = (bearer_metadata((await user_stub.Login(user_pb2.LoginRequest(
            email=ADMIN_EMAIL, password=ADMIN_PASSWORD), timeout=30)).access_token),)

        async def product(pid: str, stock: int) -> None:
            async with limit:
                await product_stub.CreateProduct(product_pb2.CreateProductRequest(
                    id=pid, name=f"Product {pid}", price=SEED_PRICE, stock=stock), timeout=30,
                    metadata=admin)

        async def user(index: int) -> str:
            request = user_pb2.CreateUserRequest(name=f"Customer {index}",
                                                 email=_customer_email(index),
                                                 password=CUSTOMER_PASSWORD)
            async with signups:
                for pause in (0.1, 0.2, 0.5, 1, 1, 2, 2, 0):
                    try:
                        return (await user_stub.CreateUser(request, timeout=60)).user.id
                    except grpc.aio.AioRpcError as error:
                        if error.code() != grpc.StatusCode.UNAVAILABLE or not pause:
                            raise
                    await asyncio.sleep(pause)

        await asyncio.gather(*(product(p, 1_000_000) for p in product_ids),
                             *(product(w, 1_000_000_000) for w in write_ids))
        return list(await asyncio.gather(*(user(i) for i in range(users))))
    except grpc.aio.AioRpcError as error:
        raise RuntimeError(f"seeding failed: {error.code().name} {error.details()}") from error
    finally:
        await products.close()
        await people.close()
