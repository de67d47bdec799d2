"""The PromQL of deploy/observability/ (the Grafana dashboard's queries and the alert rules),
and a small reader of PromQL that says which metrics and labels an expression uses: enough
for the expressions written there, not a full parser (promtool checks the syntax)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "observability"
DASHBOARD = DEPLOY / "portico-gateway.dashboard.json"
RULES = DEPLOY / "portico-alerts.yml"
# Labels Prometheus adds to every scraped series; `exported_instance` is the gateway's own
# `instance` label (an upstream's address), renamed at scrape because it clashes.
TARGET_LABELS = {"job", "instance"}
RENAMED = {"exported_instance": "instance"}

_TOKENS = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$\w+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<matcher>=~|!~|!=)
  | (?P<op>==|<=|>=|[-+*/%^<>=])
  | (?P<punct>[{}()\[\],])
  | (?P<space>\s+)
""", re.VERBOSE)
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "sum", "min", "max",
             "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
             "quantile"}


@dataclass
class Uses:
    """What one expression reads: metric names, the labels matched on each, and the labels
    it groups or matches by."""

    metrics: set[str] = field(default_factory=set)
    matched: dict[str, set[str]] = field(default_factory=dict)
    grouped: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    found, at = [], 0
    while at < len(expr):
        match = _TOKENS.match(expr, at)
        if match is None:
            raise ValueError(f"cannot read {expr[at:at + 20]!r} in {expr!r}")
        if match.lastgroup != "space":
            found.append((match.lastgroup, match.group()))
        at = match.end()
    return found


def uses(expr: str) -> Uses:
    found, items, i = Uses(), tokens(expr), 0
    while i < len(items):
        kind, text = items[i]
        after = items[i + 1][1] if i + 1 < len(items) else ""
        if kind == "name" and text in _GROUPING and after == "(":
            i, labels = _list(items, i + 2)
            found.grouped |= labels
            continue
        if kind == "name" and after != "(" and text not in _KEYWORDS:
            found.metrics.add(text)
            if after == "{":
                i, labels = _matchers(items, i + 2)
                found.matched.setdefault(text, set()).update(labels)
                continue
        elif text == "{":  # a selector without a name, such as {__name__=~"..."}
            i, _ = _matchers(items, i + 1)
            continue
        elif text == "[":  # a range or subquery: durations and variables only
            while items[i][1] != "]":
                i += 1
        i += 1
    return found


def _list(items: list[tuple[str, str]], i: int) -> tuple[int, set[str]]:
    labels = set()
    while items[i][1] != ")":
        if items[i][0] == "name":
            labels.add(items[i][1])
        i += 1
    return i + 1, labels


def _matchers(items: list[tuple[str, str]], i: int) -> tuple[int, set[str]]:
    labels = set()
    while items[i][1] != "}":
        if items[i][0] == "name" and items[i + 1][0] in ("matcher", "op"):
            labels.add(items[i][1])
        i += 1
    return i + 1, labels


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel query and template variable of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    found = [(f"panel {panel['title']!r}", target["expr"])
             for panel in board["panels"] for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) \
            else variable["query"]
        selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        assert selector, f"variable {variable['name']}: not a label_values query"
        found.append((f"variable {variable['name']!r}", selector.group(1)))
    return found


def rule_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule in the rules file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
            for group in groups for rule in group["rules"]]


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would, for promtool."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)
