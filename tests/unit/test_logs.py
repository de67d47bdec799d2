"""Log formats: JSON for files and pipes, a readable line on a terminal, PORTICO_LOG_FORMAT
forcing either; and what the readable line holds."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from services.common.logs import configure_logging, log_format, request_id_var


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in a shell."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_root_logger(monkeypatch):
    monkeypatch.delenv("PORTICO_LOG_FORMAT", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("setting, tty, chosen", [
    (None, True, "text"), (None, False, "json"), ("auto", True, "text"), ("auto", False, "json"),
    ("json", True, "json"), ("JSON", False, "json"), ("text", False, "text"),
    ("text", True, "text"),
])
def test_the_format_follows_the_setting_then_the_terminal(monkeypatch, setting, tty, chosen):
    if setting is not None:
        monkeypatch.setenv("PORTICO_LOG_FORMAT", setting)
    assert log_format(Terminal() if tty else io.StringIO()) == chosen


def test_an_unknown_format_stops_the_process_with_its_message(monkeypatch):
    monkeypatch.setenv("PORTICO_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="PORTICO_LOG_FORMAT must be one of auto, json, text"):
        configure_logging("gateway", stream=io.StringIO())


def _log_one(stream, **extra) -> str:
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("portico.test").warning("stock low for %s", "P001", extra=extra)
    finally:
        request_id_var.reset(token)
    return stream.getvalue()


def test_a_pipe_gets_json_lines():
    stream = io.StringIO()
    configure_logging("product-service", stream=stream)
    entry = json.loads(_log_one(stream, product="P001", left=2))
    assert entry["service"] == "product-service" and entry["level"] == "WARNING"
    assert entry["message"] == "stock low for P001" and entry["request_id"] == "req-42"
    assert entry["product"] == "P001" and entry["left"] == 2


def test_a_terminal_gets_one_readable_line_in_colour():
    stream = Terminal()
    configure_logging("product-service", stream=stream)
    line = _log_one(stream, product="P001", note="two words")
    assert line.count("\n") == 1 and "\x1b[33m" in line  # WARN in yellow
    plain = re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip("\n")
    assert re.fullmatch(
        r'\d\d:\d\d:\d\d\.\d{3} WARN  product-service stock low for P001 request_id=req-42 '
        r'product=P001 note="two words"', plain), plain


def test_forced_text_on_a_file_has_no_colour_and_no_colour_is_heeded(monkeypatch):
    monkeypatch.setenv("PORTICO_LOG_FORMAT", "text")
    stream = io.StringIO()
    configure_logging("gateway", stream=stream)
    line = _log_one(stream, client=None, color_message="uvicorn's coloured copy")
    assert "\x1b[" not in line and line.count("\n") == 1 and " WARN  gateway " in line
    assert "color_message" not in line
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    configure_logging("gateway", stream=terminal)
    line = _log_one(terminal, client=None)
    assert "\x1b[" not in line and line.rstrip().endswith("request_id=req-42 client=-")


def test_a_traceback_follows_its_line_and_outside_a_request_there_is_no_id():
    stream = Terminal()
    configure_logging("gateway", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("portico.test").exception("it failed")
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("it failed") and "request_id" not in first
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "RuntimeError: boom"
