"""Readable log lines for a person at a terminal: time, level, service, message, then the
request id and the extras as key=value. Files, pipes and production get JSON instead
(services/common/logs.py chooses)."""

from __future__ import annotations

import logging
import time

import orjson

from services.common.logs import extras, request_id_var
from services.common.tracing.ids import current_trace_id

_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR",
           "CRITICAL": "CRIT"}
_COLOURS = {"DEBUG": "\x1b[2m", "INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m",
            "CRITICAL": "\x1b[1;31m"}
_DIM, _RESET = "\x1b[2m", "\x1b[0m"
# Wide enough for "product-service": the lines of a whole stack in one terminal line up.
_SERVICE_WIDTH = 15


class TextFormatter(logging.Formatter):
    """One line per record, e.g.
    `14:02:11.532 INFO  gateway         request request_id=9f1c… method=GET status=200`;
    an exception's traceback follows on the next lines."""

    def __init__(self, service: str, *, colour: bool = False) -> None:
        super().__init__()
        self._service = service.ljust(_SERVICE_WIDTH)
        self._colour = colour

    def format(self, record: logging.LogRecord) -> str:
        # Local time: the reader is at this machine; the JSON lines keep UTC for collectors.
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) \
            + f".{int(record.msecs):03d}"
        level = _LEVELS.get(record.levelname, record.levelname).ljust(5)
        if self._colour:
            level = f"{_COLOURS.get(record.levelname, '')}{level}{_RESET}"
        # uvicorn's `color_message` is its own coloured copy of the message: noise here.
        fields = [(key, value) for key, value in extras(record) if key != "color_message"]
        request_id = request_id_var.get()
        trace_id = current_trace_id()
        if trace_id is not None:  # a span is active: traces are on
            fields.insert(0, ("trace_id", trace_id))
        if request_id != "-":  # "-": logged outside any request
            fields.insert(0, ("request_id", request_id))
        line = " ".join([stamp, level, self._service, record.getMessage(),
                         *(self._pair(key, value) for key, value in fields)])
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()

    def _pair(self, key: str, value: object) -> str:
        text = _value(value)
        return f"{_DIM}{key}={_RESET}{text}" if self._colour else f"{key}={text}"


def _value(value: object) -> str:
    """The value as is when it reads unambiguously, else quoted as a JSON string."""
    text = "-" if value is None else str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return orjson.dumps(text).decode()
    return text
