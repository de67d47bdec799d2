"""Which traces are kept: the standard OTEL_TRACES_SAMPLER choice, with one rule of ours.

Traces start only at a request: a span without a parent that is not a SERVER span (a Redis
call of a background retry loop, a connection pool's ping, the reconciler's calls) would begin
a trace of its own that explains nothing, so it is dropped, and so is everything under it.
Everything else is the configured sampler's decision: parent-based by default, so one decision
at the edge holds for the whole trace.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

_DROP = SamplingResult(Decision.DROP)


def configured_sampler(environ: dict[str, str] | None = None) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name (default
    parentbased_always_on), wrapped in ServerRootsOnly. A name or ratio it does not know
    stops the process (ValueError), as a bad PORTICO_* setting does."""
    environ = os.environ if environ is None else environ
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    fixed = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF,
             "parentbased_always_on": ParentBased(ALWAYS_ON),
             "parentbased_always_off": ParentBased(ALWAYS_OFF)}
    if name in fixed:
        return ServerRootsOnly(fixed[name])
    if name not in ("traceidratio", "parentbased_traceidratio"):
        raise ValueError(f"OTEL_TRACES_SAMPLER {name!r} is not one of "
                         f"{', '.join([*fixed, 'traceidratio', 'parentbased_traceidratio'])}")
    ratio = _ratio(environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0")
    sampler = TraceIdRatioBased(ratio)
    return ServerRootsOnly(sampler if name == "traceidratio" else ParentBased(sampler))


def _ratio(text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG {text!r} is not a number") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG {text!r} is not within 0..1")
    return ratio


class ServerRootsOnly(Sampler):
    """`inner`'s decision, except that a root span other than a SERVER span is dropped."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        if kind is not SpanKind.SERVER \
                and not get_current_span(parent_context).get_span_context().is_valid:
            return _DROP
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes,
                                        links, trace_state)

    def get_description(self) -> str:
        return f"ServerRootsOnly{{{self.inner.get_description()}}}"
