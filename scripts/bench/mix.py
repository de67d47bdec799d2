"""The read-heavy mix: 95% GET /products/{id} over the catalogue with Zipf-like popularity,
5% PUT of a product's price, from N keep-alive HTTP/1.1 connections for a fixed time.

Every request is timed and every answer checked, so stale reads can be counted (stale.py);
that bookkeeping is why this is a Python load generator and not wrk. It speaks HTTP/1.1 on raw
asyncio connections with httptools' parser (the one uvicorn uses) on uvloop: a general client
such as httpx costs several times more CPU per request and would measure itself. The same
driver runs against Portico and Envoy, so their ratio is fair; its own CPU use is reported.

Run as `python -m scripts.bench.mix --url http://127.0.0.1:PORT --out result.json ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop

from scripts.bench.stale import StaleReadCounter
from scripts.bench.stats import percentiles


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))

    async def request(self, raw: bytes, *, timeout: float) -> tuple[int, bytes]:
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await asyncio.wait_for(self._waiter, timeout)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass(frozen=True)
class MixConfig:
    """What to send: see the command-line options for each field."""

    url: str
    products: list[str]
    duration: float
    connections: int = 32
    put_share: float = 0.05
    zipf_s: float = 1.1
    admin_token: str | None = None
    price_base: int = 100_000
    max_requests: int = 5_000_000
    timeout: float = 10.0
    seed: int = 6


@dataclass
class MixTally:
    """What one run saw."""

    gets: int = 0
    puts: int = 0
    errors: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # by status, or the exception
    latencies: list[float] = field(default_factory=list)
    stale: StaleReadCounter = field(default_factory=StaleReadCounter)


class Mix:
    """The requests of one run, prepared once, and the workers that send them."""

    def __init__(self, config: MixConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        self._host, self._port = parts.hostname, parts.port
        host = f"{self._host}:{self._port}".encode()
        self._gets = {p: b"GET /products/%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (p.encode(), host)
                      for p in config.products}
        self._put_head = b"PUT /products/%s HTTP/1.1\r\nHost: " + host + \
            b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        if config.admin_token:
            self._put_head += b"Authorization: Bearer " + config.admin_token.encode() + b"\r\n"
        self._put_head += b"\r\n"
        self._locks = {p: asyncio.Lock() for p in config.products}
        self._versions = dict.fromkeys(config.products, 0)
        self._budget = itertools.count()
        self.tally = MixTally()

    def _plan(self, worker: int) -> list[tuple[bool, str]]:
        """A worker's sequence of (is_put, product), drawn up front so drawing costs nothing
        during the run; the worker cycles through it."""
        rng = random.Random(self.config.seed * 1000 + worker)
        weights = [1 / rank ** self.config.zipf_s for rank in range(1, len(self.config.products)
                                                                      + 1)]
        products = rng.choices(self.config.products, weights=weights, k=20_000)
        return [(rng.random() < self.config.put_share, p) for p in products]

    async def run(self) -> float:
        """Runs every worker until the duration is over; returns the elapsed seconds."""
        loop = asyncio.get_running_loop()
        connections = [(await loop.create_connection(HttpConnection, self._host, self._port))[1]
                       for _ in range(self.config.connections)]
        started = time.monotonic()
        deadline = started + self.config.duration
        try:
            await asyncio.gather(*(self._worker(c, self._plan(i), deadline)
                                   for i, c in enumerate(connections)))
        finally:
            for connection in connections:
                connection.close()
        return time.monotonic() - started

    async def _worker(self, connection: HttpConnection, plan: list[tuple[bool, str]],
                      deadline: float) -> None:
        for is_put, product in itertools.cycle(plan):
            if time.monotonic() >= deadline or next(self._budget) >= self.config.max_requests:
                return
            try:
                if is_put:
                    await self._put(connection, product)
                else:
                    await self._get(connection, product)
            except (ConnectionError, TimeoutError) as error:
                self.tally.errors += 1
                self.tally.failures[type(error).__name__] += 1
                return  # this connection is gone; the others go on

    async def _get(self, connection: HttpConnection, product: str) -> None:
        started = time.monotonic()
        status, body = await connection.request(self._gets[product],
                                                timeout=self.config.timeout)
        self.tally.latencies.append(time.monotonic() - started)
        self.tally.gets += 1
        if status != 200:
            self.tally.errors += 1
            self.tally.failures[f"GET {status}"] += 1
            return
        answer = orjson.loads(body)
        # Portico answers the product; Envoy, without response_body, {"product": {...}}.
        price = answer["price"] if "price" in answer else answer["product"]["price"]
        self.tally.stale.read(product, Decimal(price), started=started)

    async def _put(self, connection: HttpConnection, product: str) -> None:
        # One write per product at a time, each price above the last: "older" is "smaller".
        async with self._locks[product]:
            self._versions[product] += 1
            price = f"{self.config.price_base + self._versions[product]}.00"
            body = orjson.dumps({"price": price})
            raw = self._put_head % (product.encode(), len(body)) + body
            started = time.monotonic()
            status, _ = await connection.request(raw, timeout=self.config.timeout)
            completed = time.monotonic()
        self.tally.latencies.append(completed - started)
        self.tally.puts += 1
        if 200 <= status < 300:
            self.tally.stale.acknowledged(product, Decimal(price), completed=completed)
        else:
            self.tally.errors += 1
            self.tally.failures[f"PUT {status}"] += 1


def summary(mix: Mix, elapsed: float, cpu: float) -> dict:
    tally = mix.tally
    stale, owing = tally.stale.audit()
    requests = tally.gets + tally.puts
    return {
        "requests": requests, "gets": tally.gets, "puts": tally.puts, "errors": tally.errors,
        "failures": dict(tally.failures),
        "duration": elapsed, "rps": requests / elapsed if elapsed else 0.0,
        **percentiles([s * 1000 for s in tally.latencies]),
        # checked_reads: GETs that started after an acknowledged PUT of their product, i.e.
        # that could have been stale.
        "stale_reads": len(stale), "checked_reads": owing,
        "stale_examples": [{"product": s.product, "value": str(s.value), "owed": str(s.owed)}
                           for s in stale[:5]],
        "driver_cpu": cpu / elapsed if elapsed else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT (no path)")
    parser.add_argument("--products", required=True, help="comma-separated ids, most popular "
                                                          "first")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--admin-token", help="bearer token for the PUTs (Portico)")
    parser.add_argument("--price-base", type=int, default=100_000,
                        help="prices written are base+1, base+2, ...: give each run of the same "
                             "catalogue a base above every price written before")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = MixConfig(url=args.url, products=args.products.split(","),
                       duration=args.duration, connections=args.connections,
                       admin_token=args.admin_token, price_base=args.price_base)
    mix = Mix(config)
    cpu_before = sum(os.times()[:2])
    elapsed = uvloop.run(mix.run())
    result = summary(mix, elapsed, sum(os.times()[:2]) - cpu_before)
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
