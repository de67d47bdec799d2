"""The edge policies worth seeing in a trace, as spans: the rate limiter's Redis round trip and
the response cache's decision. Wrappers, put around the policies only while traces are on
(gateway/app.py), so that with traces off the policies run exactly as they are.

The rate limiter's span is the one Redis round trip of most requests: the token is taken there,
and the cache entry with its generations and the token's revocation keys are read along, so
the span counts what it read along and how much of it was there. The cache's span then shows
the decision made on those values (`HIT`, `MISS`, `STALE`, or `BYPASS` while Redis is down), and
on a miss the upstream call under it. A request whose trace was sampled out gets no span.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from gateway.answer import Answer
from gateway.policies.buckets import Decision, ReadAlong
from gateway.policies.cache import CacheRequest, Call, ResponseCache
from gateway.policies.ratelimit import RateLimiter, RatePolicy
from services.common.tracing import state

_tracer = trace.get_tracer("portico.gateway")


def _recording() -> bool:
    return trace.get_current_span().is_recording()


class TracedLimiter:
    """A RateLimiter whose `take` is a span; everything else is the limiter's own."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._limiter, name)

    async def take(self, policy: RatePolicy, key: str,
                   read_along: tuple[str, ...] = ()) -> Decision | None:
        if not _recording():
            return await self._limiter.take(policy, key, read_along)
        with _tracer.start_as_current_span("edge.ratelimit", attributes={
                "portico.ratelimit.policy": policy.name,
                "portico.redis.read_along": len(read_along)}) as span:
            decision = await self._limiter.take(policy, key, read_along)
            span.set_attributes(_outcome(decision))
            return decision


def _outcome(decision: Decision | None) -> dict[str, Any]:
    if decision is None:  # Redis down and the limiter fails closed
        return {"portico.ratelimit.decision": "unavailable"}
    outcome = {"portico.ratelimit.decision": "allow" if decision.allowed else "deny",
               "portico.ratelimit.backend": decision.backend}
    if decision.reads is not None:  # decided in Redis: the values read along came back
        outcome["db.system.name"] = "redis"
        outcome["portico.redis.found"] = sum(v is not None for v in decision.reads.values)
    return outcome


class TracedCache:
    """A ResponseCache whose `serve` is a span; everything else is the cache's own."""

    def __init__(self, cache: ResponseCache) -> None:
        self._cache = cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    async def serve(self, request: CacheRequest, reads: ReadAlong | None, call: Call) -> Answer:
        if not _recording():
            return await self._cache.serve(request, reads, call)
        with _tracer.start_as_current_span("edge.cache", attributes={
                "portico.cache.lookup": "read along" if reads is not None else "own"}) as span:
            answer = await self._cache.serve(request, reads, call)
            outcome = answer.header(b"x-cache")
            span.set_attribute("portico.cache.outcome",
                               outcome.decode("latin-1") if outcome else "BYPASS")
            return answer


def traced(limiter: RateLimiter | None, cache: ResponseCache | None
           ) -> tuple[RateLimiter | None, ResponseCache | None]:
    """The policies, wrapped while traces are on; as they are otherwise."""
    if not state.active():
        return limiter, cache
    return (TracedLimiter(limiter) if limiter is not None else None,
            TracedCache(cache) if cache is not None else None)
