"""Log records kept for a test's assertions: the services' and the gateway's logging replaces the
root logger's handlers (pytest's capture among them), so a test adds this handler itself."""

from __future__ import annotations

import logging


class Kept(logging.Handler):
    """Keeps every record at `level` or above."""

    def __init__(self, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
