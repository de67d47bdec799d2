"""The trace id of the span active in this context, for log lines.

Only the OpenTelemetry API is imported: while tracing is off no span is ever active, and the
look-up is one context-variable read.
"""

from __future__ import annotations

from opentelemetry import trace


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None when no span is active."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None

