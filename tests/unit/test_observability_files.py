"""deploy/observability/: the Grafana dashboard is importable and asks for its Prometheus as an
input, every query and rule reads only metrics the gateway declares, and promtool accepts the
rules, their unit tests (portico-alerts.test.yml), the sample configuration and the dashboard's
queries. A running gateway's /metrics is checked against them in
tests/integration/gateway/test_observability.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway import metrics
from tests.promql import DASHBOARD, DEPLOY, as_promql, dashboard_expressions, rule_expressions, uses

EXPRESSIONS = dashboard_expressions() + rule_expressions()


def test_the_reader_finds_metrics_and_labels_not_functions_or_variables() -> None:
    found = uses('histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{job=~"$job", '
                 'route!~"/x|/y"}[$__rate_interval]))) > 0.5 and on (job) sum without (code) '
                 '(increase(b_total[5m] offset 1h)) / ignoring (x) max_over_time(c[1m:10s]) '
                 'and {__name__="d"} == bool 2')
    assert found.metrics == {"a_bucket", "b_total", "c"}
    assert found.matched == {"a_bucket": {"job", "route"}}
    assert found.grouped == {"le", "route", "job", "code", "x"}


def _declared() -> set[str]:
    """Every sample name the gateway's metrics can expose."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {family.name + suffix
            for metric in vars(metrics).values() if isinstance(metric, MetricWrapperBase)
            for family in metric.describe() for suffix in suffixes[family.type]}


@pytest.mark.parametrize("where, expr", EXPRESSIONS, ids=[w for w, _ in EXPRESSIONS])
def test_each_expression_reads_metrics_the_gateway_declares(where: str, expr: str) -> None:
    used = uses(expr).metrics
    assert used and used <= _declared(), f"{where}: {sorted(used - _declared())}"


def test_the_dashboard_is_importable_with_its_prometheus_as_an_input() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"] and board["title"]
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for target in [panel, *panel.get("targets", [])]:
            if "datasource" in target:
                assert target["datasource"] == {"type": "prometheus",
                                                "uid": "${DS_PROMETHEUS}"}, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == "${DS_PROMETHEUS}"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):  # make test installs it: missing there is a failure
            pytest.fail("promtool is missing: scripts/bootstrap.sh promtool installs it")
        pytest.skip("promtool is not installed (scripts/bootstrap.sh promtool installs it)")
    return found


def _promtool(*args: str, cwd: Path = DEPLOY) -> str:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_accepts_the_rules_and_the_configuration() -> None:
    assert "SUCCESS: 7 rules found" in _promtool("check", "rules", "portico-alerts.yml")
    _promtool("check", "config", "prometheus.yml")


def test_the_alerts_fire_when_and_only_when_they_should() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "portico-alerts.test.yml")


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = [{"record": f"dashboard:query_{n}", "expr": as_promql(expr)}
             for n, (_, expr) in enumerate(dashboard_expressions())]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in _promtool("check", "rules", str(path),
                                                             cwd=tmp_path)
