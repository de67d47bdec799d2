"""Spans of our own steps (the order saga's), as INTERNAL spans under the current one."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from services.common.tracing import state

_tracer = trace.get_tracer("portico.services")
_NOTHING = contextlib.nullcontext()


def step(name: str, **attributes: Any) -> contextlib.AbstractContextManager:
    """A span named `name` around the block, current inside it; an exception leaving the block
    is recorded on it and marks it failed. Nothing at all while traces are off."""
    if not state.active():
        return _NOTHING
    return _tracer.start_as_current_span(name, attributes=attributes or None)


def traced_step(name: str) -> Callable:
    """`step(name)` around every call of an async function (a method of the saga)."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        async def run(*args: Any, **kwargs: Any) -> Any:
            with step(name):
                return await function(*args, **kwargs)
        return run
    return decorate
