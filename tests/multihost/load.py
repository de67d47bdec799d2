"""Load for the fault tests, run on the client loop: reads of products, orders placed with
Idempotency-Keys, every call timed and kept, and the check that no read shows a product's
stock from before an order that had already been acknowledged (a stale cache read).

Stock only goes down while the tests run (orders, never cancellations), so the check needs no
guessing: a read that started after orders of a product were acknowledged must show at most
its stock before the test minus those orders' quantities; more is stale. An order not yet
acknowledged may show or not, and one that failed gives its stock back, which never shows more
than that bound either.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.multihost.api import Account


@dataclass
class Call:
    kind: str
    started: float
    ended: float
    status: int          # 0: no answer (a transport error or the client's timeout)
    detail: str = ""


@dataclass
class Log:
    calls: list[Call] = field(default_factory=list)

    async def timed(self, kind: str, request) -> httpx.Response | None:
        """Awaits `request` (a coroutine giving a response), keeps its outcome."""
        started = time.monotonic()
        try:
            answer = await request
        except httpx.HTTPError as error:
            self.calls.append(Call(kind, started, time.monotonic(), 0, type(error).__name__))
            return None
        self.calls.append(Call(kind, started, time.monotonic(), answer.status_code))
        return answer

    def of(self, kind: str) -> list[Call]:
        return [call for call in self.calls if call.kind == kind]

    def statuses(self, kind: str | None = None) -> Counter[int]:
        return Counter(c.status for c in self.calls if kind is None or c.kind == kind)

    def failed(self, kind: str | None = None) -> list[Call]:
        """Calls with no answer or a 5xx."""
        return [c for c in self.calls if (kind is None or c.kind == kind)
                and (c.status == 0 or c.status >= 500)]


async def until(deadline: float, step, *, pause: float = 0.0, limit: int = 100_000) -> None:
    """Runs `step()` again and again until `deadline` (monotonic), at most `limit` times."""
    for _ in range(limit):
        if time.monotonic() >= deadline:
            return
        await step()
        if pause:
            await asyncio.sleep(pause)


def order_body(product: str, quantity: int = 1) -> dict:
    return {"items": [{"product_id": product, "quantity": quantity}],
            "payment": {"token": "tok_visa"}}


async def place_order(client: httpx.AsyncClient, log: Log, customer: Account, product: str,
                      *, key: str | None = None, kind: str = "order") -> httpx.Response | None:
    """POST /orders for one unit of `product`; with an Idempotency-Key unless `key` is ""."""
    key = uuid.uuid4().hex if key is None else key
    headers = {**customer.headers, **({"Idempotency-Key": key} if key else {})}
    return await log.timed(kind, client.post("/orders", json=order_body(product),
                                             headers=headers))


class StockWatch:
    """Acknowledged orders and reads of the products they took stock from."""

    def __init__(self, initial: dict[str, int]) -> None:
        self.initial = initial
        self._acked: dict[str, list[tuple[float, int]]] = {p: [] for p in initial}
        self.reads: list[tuple[float, str, int, str]] = []   # started, product, stock, X-Cache

    def acknowledged(self, product: str, quantity: int = 1) -> None:
        self._acked[product].append((time.monotonic(), quantity))

    def read(self, started: float, product: str, answer: httpx.Response) -> None:
        if answer.status_code == 200:
            self.reads.append((started, product, answer.json()["stock"],
                               answer.headers.get("X-Cache", "")))

    def stale(self) -> list[tuple[float, str, int, int]]:
        """Reads that showed more stock than acknowledged orders had left: (started,
        product, shown, at most expected)."""
        found = []
        for started, product, stock, _ in self.reads:
            acked = self._acked[product]
            before = bisect.bisect_left(acked, (started, -1))
            bound = self.initial[product] - sum(q for _, q in acked[:before])
            if stock > bound:
                found.append((started, product, stock, bound))
        return found

    def cache_outcomes(self) -> Counter[str]:
        return Counter(outcome for *_, outcome in self.reads)


async def stocks(client: httpx.AsyncClient, products: list[str]) -> dict[str, int]:
    """Each product's stock now, read past the cache."""
    found = {}
    for product in products:
        answer = await client.get(f"/products/{product}", headers={"Cache-Control": "no-cache"})
        assert answer.status_code == 200, answer.text
        found[product] = answer.json()["stock"]
    return found
