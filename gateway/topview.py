"""How `portico top` draws a frame: plain text that fits 80 columns, colour on a terminal only
(so `--once` into a file or a test reads the same figures)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

_RED, _YELLOW, _BOLD, _RESET = "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
_LABEL, _NOW, _SINCE = 22, 14, 16  # column widths of the figures


@dataclass
class Frame:
    """Everything one frame shows: the figures of the last interval and since the gateway
    started (see gateway.top.figures), and the upstream instances."""

    url: str
    seconds: float
    now: dict[str, float | None]
    since: dict[str, float | None]
    instances: list[dict]
    source: str


def render(frame: Frame, *, colour: bool = False) -> str:
    def paint(text: str, code: str | None) -> str:
        return f"{code}{text}{_RESET}" if colour and code else text

    now, since, per = frame.now, frame.since, frame.seconds
    lines = [paint(f"portico top  {frame.url}  {time.strftime('%H:%M:%S')}", _BOLD),
             "(API traffic: probes, scrapes and this view's own calls are not counted)", "",
             f"{'':{_LABEL}}{'last ' + _seconds(per):>{_NOW}}{'since start':>{_SINCE}}"]
    rows = [
        ("requests", _rate(now["requests"], per), _count(since["requests"]), None),
        ("errors 5xx", _ratio(now["5xx"], now["requests"]),
         _count_and_ratio(since["5xx"], since["requests"]), _RED if now["5xx"] else None),
        ("errors 4xx", _ratio(now["4xx"], now["requests"]),
         _count_and_ratio(since["4xx"], since["requests"]), None),
        ("latency p50", _duration(now["p50"]), _duration(since["p50"]), None),
        ("latency p99", _duration(now["p99"]), _duration(since["p99"]), None),
        ("cache hit ratio", _ratio(now["cache hits"], now["cache lookups"]),
         _ratio(since["cache hits"], since["cache lookups"]), None),
        ("shed", _rate(now["shed"], per), _count(since["shed"]), _RED if now["shed"] else None),
        ("rate-limit denials", _rate(now["denials"], per), _count(since["denials"]), None),
        ("redis errors", _rate(now["redis errors"], per), _count(since["redis errors"]),
         _RED if now["redis errors"] else None),
        ("redis", _up(now["redis up"]), "", _RED if now["redis up"] == 0 else None),
    ]
    lines += [paint(f"{label:{_LABEL}}{last:>{_NOW}}{total:>{_SINCE}}", code)
              for label, last, total, code in rows]
    lines += ["", *_instance_lines(frame.instances, per, paint), "", frame.source]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _instance_lines(instances: list[dict], per: float,
                    paint: Callable[[str, str | None], str]) -> list[str]:
    if not instances:
        return ["no upstream instances in /metrics yet"]
    wide = max(len("instance"), *(len(row["instance"]) for row in instances))
    lines = [f"{'service':9}{'instance':{wide}}  {'health':8}{'breaker':10}"
             f"{'calls/s':>9}{'failed/s':>10}{'calls':>10}"]
    for row in instances:
        health, breaker = _up(row["healthy"]), row["breaker"] or "?"
        code = _RED if health == "DOWN" or breaker == "open" else \
            _YELLOW if breaker == "half-open" else None
        lines.append(paint(
            f"{row['service']:9}{row['instance']:{wide}}  {health:8}{breaker:10}"
            f"{_number(row['calls'] / per):>9}{_number(row['failed'] / per):>10}"
            f"{_count(row['total']):>10}", code))
    return lines


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _rate(count: float | None, seconds: float) -> str:
    return "-" if count is None or seconds <= 0 else f"{_number(count / seconds)}/s"


def _number(value: float) -> str:
    return f"{value:,.1f}"


def _count(count: float | None) -> str:
    return "-" if count is None else f"{count:,.0f}"


def _ratio(part: float | None, whole: float | None) -> str:
    return "-" if not whole or part is None else f"{100 * part / whole:.1f}%"


def _count_and_ratio(part: float | None, whole: float | None) -> str:
    return f"{_count(part)} ({_ratio(part, whole)})"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.2f} ms" if seconds < 0.01 else f"{seconds * 1000:.1f} ms"


def _up(value: float | None) -> str:
    return "?" if value is None else ("up" if value >= 1 else "DOWN")
