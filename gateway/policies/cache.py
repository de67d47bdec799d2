"""The response cache of public GETs, in Redis and shared by every gateway replica.

A request on a route with a CacheRule is answered from Redis when the stored entry was filled
at the current generations of what it shows and is younger than the TTL (`X-Cache: HIT`);
otherwise it goes upstream once per key and process (single flight, shared only among requests
that saw the same generations) and the answer is stored, written behind (`X-Cache: MISS`).
When the upstream is unavailable (502, 503, 504), an entry that is still current and within
TTL + max-stale is served instead (`X-Cache: STALE`). When Redis fails, the cache steps aside
and requests go straight upstream. Every other request passes through untouched.

Only public routes are ever given a rule. Compression, if any, must sit outside this
middleware, so that one stored body suits every client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from redis.asyncio import Redis
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.metrics import CACHE, child
from gateway.policies import readalong
from gateway.policies.batch import RedisBatcher
from gateway.policies.cache_entry import (
    CacheRule,
    Entry,
    cache_key,
    directives,
    etag_matches,
    generations,
    make_etag,
)
from gateway.policies.cache_store import CacheStore, Lookup

__all__ = ["CacheMiddleware", "CacheRule", "LookupPlan", "cache_key", "generations"]

STALE_IF_ERROR = frozenset({502, 503, 504})
# Validators and freshness of a cacheable answer are the cache's own; the upstream's go.
_OURS = frozenset({b"etag", b"cache-control", b"age", b"x-cache"})
# Headers about one request, never copied onto another's answer.
_PER_REQUEST = frozenset({b"x-request-id", b"set-cookie", b"date", b"server"})
# The request headers the cache reads.
_READ = frozenset({b"cache-control", b"pragma", b"if-none-match"})
# The cache answers conditional requests itself: the upstream always sends the full answer,
# which can then be stored and shared whatever the first client's validators were.
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"if-match",
                          b"if-unmodified-since", b"if-range"})


class CacheMiddleware:
    """Caches the GET answers of the routes matching `rules` for `ttl` seconds, and keeps them
    `max_stale` seconds longer for when the upstream is down. `redis` must not decode
    responses; `redis_timeout` bounds each Redis call and `backoff` is how long (on `clock`)
    the cache stays out of the way after a Redis failure. `batcher`, when given, is the rate
    limiter's: fills then ride in its pipelines (and its timeout applies)."""

    def __init__(self, app: ASGIApp, *, redis: Redis, rules: Iterable[CacheRule],
                 ttl: float, max_stale: float, backoff: float = 0.5,
                 redis_timeout: float = 0.25, max_entry_bytes: int = 1 << 20,
                 batcher: RedisBatcher | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0 or max_stale < 0 or max_entry_bytes <= 0:
            raise ValueError("ttl and max_entry_bytes must be positive, max_stale not negative")
        self.app = app
        self._rules = tuple(rules)
        self._ttl = ttl
        self._max_stale = max_stale
        self._max_entry_bytes = max_entry_bytes
        self._store = CacheStore(redis, timeout=redis_timeout, backoff=backoff, batcher=batcher,
                                 clock=clock)
        self._flights: dict[str, _Flight] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        generation_keys = self._match(scope)
        if generation_keys is None:
            await self.app(scope, receive, send)
            return
        if not self._store.available:
            CACHE.labels(outcome="bypass").inc()
            await self.app(scope, receive, send)
            return
        request = _Request.parse(scope, generation_keys)
        upstream_scope = scope
        if any(name in _CONDITIONAL for name, _ in scope["headers"]):
            upstream_scope = {**scope, "headers": [
                (name, value) for name, value in scope["headers"] if name not in _CONDITIONAL]}
        lookup = await self._lookup(request, scope)
        if lookup is None:  # Redis failed just now: straight upstream
            answer = _Answer.passed(await _capture(self.app, upstream_scope, receive), label=None)
        elif (hit := self._hit(request, lookup)) is not None:
            answer = hit
        elif request.head or request.revalidate:
            answer = await self._resolve(request, lookup, upstream_scope, receive)
        else:
            answer = await self._single_flight(request, lookup, upstream_scope, receive)
        child(CACHE, (answer.label or "bypass").lower()).inc()
        await _send(send, answer, request)

    def _match(self, scope: Scope) -> tuple[str, ...] | None:
        return match(self._rules, scope)

    async def _lookup(self, request: _Request, scope: Scope) -> Lookup | None:
        reads = readalong.take(scope, (request.key, *request.generation_keys))
        if reads is not None:  # read in the rate limiter's round trip, just now
            return Lookup.of(reads.values[0], list(reads.values[1:]), now=reads.now,
                             read_at=reads.read_at)
        return await self._store.lookup(request.key, request.generation_keys)

    async def _single_flight(self, request: _Request, lookup: Lookup, scope: Scope,
                             receive: Receive) -> _Answer:
        # No await between the check and the registration: in one process, one request per
        # key leads, and the others that saw the same generations share its answer. One that
        # saw other generations (a write was acknowledged in between) must not be given data
        # read before that write: it makes its own call.
        flight = self._flights.get(request.key)
        if flight is not None:
            if flight.generations != lookup.generations:
                return await self._resolve(request, lookup, scope, receive)
            shared = await asyncio.shield(flight.answer)
            if shared is None:
                # The leader failed or was cancelled: the waiters elect a new one.
                return await self._single_flight(request, lookup, scope, receive)
            if not shared.shareable:
                # An answer for the leader's client alone: each waiter asks for its own.
                return await self._resolve(request, lookup, scope, receive)
            return shared.for_follower()
        flight = _Flight(lookup.generations, asyncio.get_running_loop().create_future())
        self._flights[request.key] = flight
        answer = None
        try:
            # Until its fill is in Redis, a request for the key would find no entry there: the
            # flight stays till then, so such requests share its answer instead of calling.
            answer = await self._resolve(request, lookup, scope, receive,
                                         on_stored=lambda: self._land_soon(request.key, flight))
            return answer
        finally:
            flight.answer.set_result(answer)
            if answer is None or not answer.storing:
                self._land(request.key, flight)

    def _land(self, key: str, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _land_soon(self, key: str, flight: _Flight) -> None:
        # After the requests whose lookups went out before the fill (in its very pipeline
        # too) have looked for the flight: they found no entry, so they must find the flight.
        asyncio.get_running_loop().call_soon(self._land, key, flight)

    def _hit(self, request: _Request, lookup: Lookup) -> _Answer | None:
        if request.revalidate:
            return None
        entry, age = lookup.current(), lookup.age()
        if entry is not None and age is not None and age <= self._ttl:
            return self._from_entry(entry, age, "HIT")
        return None

    async def _resolve(self, request: _Request, lookup: Lookup, scope: Scope,
                       receive: Receive, on_stored: Callable[[], None] | None = None) -> _Answer:
        """The upstream's answer (a miss), stored when it may be, or a stale copy when the
        upstream is unavailable."""
        response = await _capture(self.app, scope, receive)
        if response.status in STALE_IF_ERROR and not request.revalidate:
            stale = await self._stale(request)
            if stale is not None:
                return stale
        if self._cacheable(response, request):
            return self._fill(request, response, lookup, on_stored)
        return _Answer.passed(response, label="MISS")

    async def _stale(self, request: _Request) -> _Answer | None:
        # Read again after the failed call: a write that landed meanwhile has bumped the
        # generation, and then the stored copy is known to be wrong and must not be served.
        lookup = await self._store.lookup(request.key, request.generation_keys)
        if lookup is None:
            return None
        entry, age = lookup.current(), lookup.age()
        if entry is None or age is None or age > self._ttl + self._max_stale:
            return None
        return self._from_entry(entry, age, "STALE")

    def _cacheable(self, response: _Response, request: _Request) -> bool:
        return (not request.head and response.status == 200 and response.shareable
                and "no-cache" not in response.cache_control
                and len(response.body) <= self._max_entry_bytes)

    def _fill(self, request: _Request, response: _Response, lookup: Lookup,
              on_stored: Callable[[], None] | None) -> _Answer:
        # Never stale after a write, without compare-and-set: the entry carries the
        # generations read by the lookup BEFORE the upstream call. A service bumps the
        # generation after its write and before it returns, so either the bump came before our
        # lookup (then the upstream read the new data), or it comes after it (then the stored
        # generation is already behind and this entry can never be a hit). Data read during a
        # write's window is therefore never served from the cache.
        entry = Entry(status=response.status, content_type=response.header(b"content-type"),
                      body=response.body, etag=make_etag(response.body),
                      stored_at=lookup.redis_now(), generations=lookup.generations)
        if not request.no_store:
            self._store.store(request.key, entry, keep_seconds=self._ttl + self._max_stale,
                              on_done=on_stored)
        headers = tuple((name, value) for name, value in response.headers if name not in _OURS)
        return _Answer(response.status, headers, response.body, "MISS", etag=entry.etag,
                       max_age=int(self._ttl), storing=not request.no_store)

    def _from_entry(self, entry: Entry, age: float, label: str) -> _Answer:
        headers = ((b"content-type", entry.content_type.encode("latin-1")),
                   (b"content-length", str(len(entry.body)).encode()))
        return _Answer(entry.status, headers, entry.body, label, etag=entry.etag,
                       age=int(age), max_age=max(0, int(self._ttl - int(age))))


def match(rules: tuple[CacheRule, ...], scope: Scope) -> tuple[str, ...] | None:
    """The generation keys of a cacheable request, or None for one the cache leaves alone."""
    if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
        return None
    for rule in rules:
        keys = rule.match(scope["path"])
        if keys is not None:
            return keys
    return None


class LookupPlan:
    """The keys the cache will read for a request, for the rate limiter to read along
    (gateway/readalong.py): the entry and its generations."""

    def __init__(self, rules: Iterable[CacheRule]) -> None:
        self._rules = tuple(rules)

    def __call__(self, scope: Scope) -> tuple[str, ...] | None:
        generation_keys = match(self._rules, scope)
        if generation_keys is None:
            return None
        return (cache_key(scope["path"], scope.get("query_string", b"")), *generation_keys)


@dataclass(frozen=True)
class _Flight:
    """An upstream call in progress for a key, and the generations its leader read."""

    generations: tuple[str, ...]
    answer: asyncio.Future[_Answer | None]


@dataclass(frozen=True)
class _Request:
    """What the cache needs to know about one request, read from its scope once."""

    key: str
    generation_keys: tuple[str, ...]
    head: bool
    revalidate: bool  # The client wants the upstream's answer, not a stored one.
    no_store: bool
    if_none_match: str | None

    @classmethod
    def parse(cls, scope: Scope, generation_keys: tuple[str, ...]) -> _Request:
        values: dict[bytes, list[str]] = {}
        for name, value in scope["headers"]:
            if name in _READ:
                values.setdefault(name, []).append(value.decode("latin-1"))
        control = directives(values.get(b"cache-control", ()))
        no_store = "no-store" in control
        revalidate = (no_store or "no-cache" in control or "max-age=0" in control
                      or "no-cache" in directives(values.get(b"pragma", ())))
        if_none_match = ", ".join(values[b"if-none-match"]) if b"if-none-match" in values else None
        return cls(key=cache_key(scope["path"], scope.get("query_string", b"")),
                   generation_keys=generation_keys, head=scope["method"] == "HEAD",
                   revalidate=revalidate, no_store=no_store, if_none_match=if_none_match)


@dataclass(frozen=True)
class _Response:
    """An upstream answer, buffered whole (answers here are small JSON documents)."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def header(self, name: bytes) -> str:
        return ", ".join(v.decode("latin-1") for n, v in self.headers if n == name)

    @property
    def cache_control(self) -> frozenset[str]:
        return directives([self.header(b"cache-control")])

    @property
    def shareable(self) -> bool:
        """False for anything meant for one client only: never stored nor handed to another."""
        return (not any(name == b"set-cookie" for name, _ in self.headers)
                and not {"private", "no-store"} & self.cache_control)


@dataclass(frozen=True)
class _Answer:
    """What is sent back, before the request's own conditional headers are applied."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    label: str | None  # X-Cache: HIT, MISS or STALE; None when the cache stepped aside.
    etag: str | None = None  # Set on cacheable answers, which then get validators.
    age: int | None = None
    max_age: int = 0
    shareable: bool = True
    storing: bool = False  # its fill is on its way to Redis

    @classmethod
    def passed(cls, response: _Response, *, label: str | None) -> _Answer:
        return cls(response.status, response.headers, response.body, label,
                   shareable=response.shareable)

    def for_follower(self) -> _Answer:
        """This answer as given to the requests that waited for it."""
        return replace(self, headers=tuple(
            (name, value) for name, value in self.headers if name not in _PER_REQUEST))


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> _Response:
    start: dict | None = None
    chunks: list[bytes] = []

    async def send(message: dict) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    if start is None:
        raise RuntimeError("the application returned without starting a response")
    headers = tuple((bytes(name).lower(), bytes(value))
                    for name, value in start.get("headers", ()))
    return _Response(start["status"], headers, b"".join(chunks))


async def _send(send: Send, answer: _Answer, request: _Request) -> None:
    status, headers, body = answer.status, list(answer.headers), answer.body
    if answer.etag is not None:
        headers += [(b"etag", answer.etag.encode()),
                    (b"cache-control", f"public, max-age={answer.max_age}".encode())]
        if request.if_none_match and etag_matches(request.if_none_match, answer.etag):
            status, body = 304, b""
            headers = [(n, v) for n, v in headers if n not in (b"content-type", b"content-length")]
    if answer.age is not None:
        headers.append((b"age", str(answer.age).encode()))
    if answer.label is not None:
        headers.append((b"x-cache", answer.label.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if request.head else body})
