"""The response cache of public GETs, in Redis and shared by every gateway replica.

A request on a route with a CacheRule is answered from Redis when the stored entry was filled at
the current generations of what it shows and is younger than the TTL (`X-Cache: HIT`); otherwise
the upstream is called once per key and process (single flight, shared only among requests that
saw the same generations) and the answer is stored, written behind (`X-Cache: MISS`). When the
upstream is unavailable (502, 503, 504), an entry that is still current and within TTL +
max-stale is served instead (`X-Cache: STALE`). While Redis is down the cache steps aside and
requests go straight upstream.

Only public routes are ever given a rule. The key is built from the route's validated
parameters only, so a client cannot mint keys with parameters the route ignores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gateway.answer import Answer
from gateway.metrics import CACHE, child
from gateway.policies.buckets import ReadAlong
from gateway.policies.cache_entry import (
    CacheRule,
    Entry,
    cache_key,
    directives,
    etag_matches,
    make_etag,
)
from gateway.policies.cache_store import CacheStore, Lookup
from gateway.policies.redis import RedisLink

Call = Callable[[], Awaitable[Answer]]
STALE_IF_ERROR = frozenset({502, 503, 504})
# Validators and freshness of a cacheable answer are the cache's own; the upstream's go.
_OURS = frozenset({b"etag", b"cache-control", b"age", b"x-cache"})
# Headers about one request, never copied onto another's answer.
_PER_REQUEST = frozenset({b"x-request-id", b"set-cookie", b"date", b"server"})


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass(slots=True)
class CacheRequest:
    """What the cache needs to know about one request, read once."""

    key: str
    generation_keys: tuple[str, ...]
    head: bool
    revalidate: bool  # the client wants the upstream's answer, not a stored one
    no_store: bool
    if_none_match: str | None

    @property
    def read_along(self) -> tuple[str, ...]:
        """The keys to read in the rate limiter's round trip: the entry, its generations."""
        return (self.key, *self.generation_keys)


def cache_request(rule: CacheRule, *, path: str, params: dict[str, str],
                  query: Iterable[tuple[str, str]], head: bool, cache_control: Iterable[str],
                  pragma: Iterable[str], if_none_match: str | None) -> CacheRequest:
    control = directives(cache_control)
    no_store = "no-store" in control
    revalidate = (no_store or "no-cache" in control or "max-age=0" in control
                  or "no-cache" in directives(pragma))
    return CacheRequest(cache_key(path, query, tag=rule.tag(params)),
                        rule.generation_keys(params), head=head,
                        revalidate=revalidate, no_store=no_store, if_none_match=if_none_match)


@dataclass(frozen=True)
class _Flight:
    """An upstream call in progress for a key, and the generations its leader read."""

    generations: tuple[str, ...]
    answer: asyncio.Future[_Stored | None]


class ResponseCache:
    """Serves cacheable requests from Redis through `link`: entries fresh for `ttl` seconds,
    kept `max_stale` seconds longer for when the upstream is down; answers over
    `max_entry_bytes` are not stored."""

    def __init__(self, link: RedisLink, *, ttl: float, max_stale: float,
                 max_entry_bytes: int = 1 << 20) -> None:
        if ttl <= 0 or max_stale < 0 or max_entry_bytes <= 0:
            raise ValueError("ttl and max_entry_bytes must be positive, max_stale not negative")
        self._store = CacheStore(link)
        self._ttl = ttl
        self._max_stale = max_stale
        self._max_entry_bytes = max_entry_bytes
        self._flights: dict[str, _Flight] = {}

    async def serve(self, request: CacheRequest, reads: ReadAlong | None, call: Call) -> Answer:
        """The answer to `request`: stored, or `call`'s (stored for later), with the cache's
        headers and the request's conditional applied. `reads` are the values of
        `request.read_along` when the rate limiter read them just now."""
        if reads is not None:
            lookup = Lookup.of(reads.values[0], list(reads.values[1:]), now=reads.now,
                               read_at=reads.read_at)
        elif self._store.usable:
            lookup = await self._store.lookup(request.key, request.generation_keys)
        else:
            lookup = None
        # Redis is down, or back so recently that a write's signal may still be on its way:
        # straight upstream.
        if lookup is None or not self._store.settled:
            child(CACHE, "bypass").inc()
            return await call()
        stored = self._hit(request, lookup)
        if stored is not None:
            label = "HIT"
        elif request.head or request.revalidate:
            stored, label = await self._resolve(request, lookup, call)
        else:
            stored, label = await self._single_flight(request, lookup, call)
        child(CACHE, label.lower()).inc()
        return _finish(stored, label, request)

    async def _single_flight(self, request: CacheRequest, lookup: Lookup,
                             call: Call) -> tuple[_Stored, str]:
        # No await between the check and the registration: in one process, one request per
        # key leads, and the others that saw the same generations share its answer. One that
        # saw other generations (a write was acknowledged in between) must not be given data
        # read before that write: it makes its own call.
        flight = self._flights.get(request.key)
        if flight is not None:
            if flight.generations != lookup.generations:
                return await self._resolve(request, lookup, call)
            shared = await asyncio.shield(flight.answer)
            if shared is None:  # the leader failed or was cancelled: elect a new one
                return await self._single_flight(request, lookup, call)
            if not shared.shareable:  # meant for the leader's client alone
                return await self._resolve(request, lookup, call)
            return shared.for_follower(), "MISS"
        flight = _Flight(lookup.generations, asyncio.get_running_loop().create_future())
        self._flights[request.key] = flight
        result: tuple[_Stored, str] | None = None
        try:
            # Until its fill is in Redis, a request for the key would find no entry there: the
            # flight stays till then, so such requests share its answer instead of calling.
            result = await self._resolve(request, lookup, call,
                                         on_stored=lambda: self._land_soon(request.key, flight))
            return result
        finally:
            flight.answer.set_result(result[0] if result else None)
            if result is None or not result[0].storing:
                self._land(request.key, flight)

    def _land(self, key: str, flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _land_soon(self, key: str, flight: _Flight) -> None:
        # After the requests whose lookups went out before the fill (in its very pipeline
        # too) have looked for the flight: they found no entry, so they must find the flight.
        asyncio.get_running_loop().call_soon(self._land, key, flight)

    def _hit(self, request: CacheRequest, lookup: Lookup) -> _Stored | None:
        if request.revalidate:
            return None
        entry, age = lookup.current(), lookup.age()
        if entry is not None and age is not None and age <= self._ttl:
            return self._from_entry(entry, age)
        return None

    async def _resolve(self, request: CacheRequest, lookup: Lookup, call: Call,
                       on_stored: Callable[[], None] | None = None) -> tuple[_Stored, str]:
        """The upstream's answer (a miss), stored when it may be, or a stale copy when the
        upstream is unavailable."""
        answer = await call()
        if answer.status in STALE_IF_ERROR and not request.revalidate:
            stale = await self._stale(request)
            if stale is not None:
                return stale, "STALE"
        stored = _Stored(answer)
        if self._cacheable(stored, request):
            return self._fill(request, stored, lookup, on_stored), "MISS"
        return stored, "MISS"

    async def _stale(self, request: CacheRequest) -> _Stored | None:
        # Read again after the failed call: a write that landed meanwhile has bumped the
        # generation, and then the stored copy is known to be wrong and must not be served.
        lookup = await self._store.lookup(request.key, request.generation_keys)
        if lookup is None:
            return None
        entry, age = lookup.current(), lookup.age()
        if entry is None or age is None or age > self._ttl + self._max_stale:
            return None
        return self._from_entry(entry, age)

    def _cacheable(self, stored: _Stored, request: CacheRequest) -> bool:
        return (not request.head and stored.answer.status == 200 and stored.shareable
                and "no-cache" not in stored.cache_control
                and len(stored.answer.body) <= self._max_entry_bytes)

    def _fill(self, request: CacheRequest, stored: _Stored, lookup: Lookup,
              on_stored: Callable[[], None] | None) -> _Stored:
        # Never stale after a write, without compare-and-set: the entry carries the
        # generations read by the lookup BEFORE the upstream call. A service bumps the
        # generation after its write and before it returns, so either the bump came before our
        # lookup (then the upstream read the new data), or it comes after it (then the stored
        # generation is already behind and this entry can never be a hit). Data read during a
        # write's window is therefore never served from the cache.
        answer = stored.answer
        entry = Entry(status=answer.status,
                      content_type=(answer.header(b"content-type") or b"").decode("latin-1"),
                      body=answer.body, etag=make_etag(answer.body),
                      stored_at=lookup.redis_now(), generations=lookup.generations)
        if not request.no_store:
            self._store.store(request.key, entry, keep_seconds=self._ttl + self._max_stale,
                              on_done=on_stored)
        headers = [(name, value) for name, value in answer.headers if name not in _OURS]
        return _Stored(Answer(answer.status, headers, answer.body), etag=entry.etag,
                       max_age=int(self._ttl), storing=not request.no_store)

    def _from_entry(self, entry: Entry, age: float) -> _Stored:
        headers = [(b"content-type", entry.content_type.encode("latin-1")),
                   (b"content-length", str(len(entry.body)).encode())]
        return _Stored(Answer(entry.status, headers, entry.body), etag=entry.etag,
                       age=int(age), max_age=max(0, int(self._ttl - int(age))))


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass(slots=True)
class _Stored:
    """An answer and what the cache knows of it: validators (cacheable answers only), age."""

    answer: Answer
    etag: str | None = None
    age: int | None = None
    max_age: int = 0
    storing: bool = False  # its fill is on its way to Redis

    @property
    def cache_control(self) -> frozenset[str]:
        value = self.answer.header(b"cache-control")
        return directives([value.decode("latin-1")]) if value else frozenset()

    @property
    def shareable(self) -> bool:
        """False for anything meant for one client only: never stored nor handed to another."""
        return (self.answer.header(b"set-cookie") is None
                and not {"private", "no-store"} & self.cache_control)

    def for_follower(self) -> _Stored:
        answer = self.answer
        return _Stored(Answer(answer.status, [(n, v) for n, v in answer.headers
                                              if n not in _PER_REQUEST], answer.body),
                       etag=self.etag, max_age=self.max_age)


def _finish(stored: _Stored, label: str, request: CacheRequest) -> Answer:
    answer = stored.answer
    status, headers, body = answer.status, list(answer.headers), answer.body
    if stored.etag is not None:
        headers += [(b"etag", stored.etag.encode()),
                    (b"cache-control", f"public, max-age={stored.max_age}".encode())]
        if request.if_none_match and etag_matches(request.if_none_match, stored.etag):
            status, body = 304, b""
            headers = [(n, v) for n, v in headers if n not in (b"content-type", b"content-length")]
    if stored.age is not None:
        headers.append((b"age", str(stored.age).encode()))
    headers.append((b"x-cache", label.encode()))
    return Answer(status, headers, body)
