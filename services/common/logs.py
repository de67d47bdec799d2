"""Log lines that carry the request id of the call being served: JSON for files, pipes and
production, a readable line on a terminal (services/common/logtext.py)."""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from typing import IO

import orjson

from services.common.tracing.ids import current_trace_id

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# LogRecord attributes that are not caller-supplied extras.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def extras(record: logging.LogRecord) -> list[tuple[str, object]]:
    """The caller-supplied extras of a record (`extra={...}`), in the order given."""
    return [(key, value) for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, trace_id (while a
    span is active) and any extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        trace_id = current_trace_id()
        if trace_id is not None:  # a span is active: traces are on (services/common/tracing)
            entry["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry.setdefault(key, value)  # an extra never hides a standard field
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


LOG_FORMATS = ("auto", "json", "text")


def log_format(stream: IO[str]) -> str:
    """"json" or "text": PORTICO_LOG_FORMAT when it says which, else text on a terminal only,
    so that files, pipes and log collectors always get JSON."""
    chosen = os.environ.get("PORTICO_LOG_FORMAT", "auto").strip().lower() or "auto"
    if chosen not in LOG_FORMATS:
        raise ValueError(f"PORTICO_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                         f"not {chosen!r}")
    if chosen == "auto":
        return "text" if _isatty(stream) else "json"
    return chosen


def configure_logging(service: str, level: str = "INFO", *,
                      stream: IO[str] | None = None) -> None:
    """Sends every logger's records to stderr (or `stream`), one line each, in `log_format`."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if log_format(stream) == "text":
        from services.common.logtext import TextFormatter  # it imports this module

        colour = _isatty(stream) and not os.environ.get("NO_COLOR")
        handler.setFormatter(TextFormatter(service, colour=colour))
    else:
        handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False
