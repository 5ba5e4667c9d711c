"""The Grafana dashboard asks only for series the operator exports, with their own labels.

The list below is the metrics module's contract (operator/eval_operator/metrics.py), kept
here on purpose rather than imported: a rename on either side fails this test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chart.support import CHART

DASHBOARD = CHART / "grafana" / "eval-operator.json"
# name -> (type, labels)
METRICS = {
    "eval_operator_evaltask_progress_ratio": ("gauge", {"namespace", "evaltask"}),
    "eval_operator_evaltask_runs": ("gauge", {"namespace", "evaltask", "state"}),
    "eval_operator_run_duration_seconds": ("histogram", {"task"}),
    "eval_operator_run_metric": ("gauge", {"namespace", "evaltask", "model", "task", "metric"}),
    "eval_operator_run_score": ("gauge", {"namespace", "evaltask", "model", "task"}),
    "eval_operator_reconcile_total": ("counter", {"result"}),
    "eval_operator_reconcile_duration_seconds": ("histogram", {"result"}),
    "eval_operator_jobs_created_total": ("counter", set()),
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
SERIES = re.compile(r"\beval_operator_[a-z0-9_]+")


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries() -> list[str]:
    """Every PromQL expression: the panels' targets and the variables' queries."""
    doc = dashboard()
    exprs = [t["expr"] for p in panels(doc) for t in p.get("targets", [])]
    for variable in doc["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def metric_of(series: str) -> str:
    """A series name -> the metric it belongs to (a histogram's _bucket/_sum/_count)."""
    if series in METRICS and METRICS[series][0] != "histogram":
        return series
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and METRICS.get(base, ("",))[0] == "histogram":
            return base
    raise AssertionError(f"{series} is not a series the operator exports")


@pytest.mark.parametrize("expr", queries())
def test_each_query_uses_exported_series_and_their_labels(expr):
    used = [metric_of(s) for s in SERIES.findall(expr)]
    assert used, f"no eval_operator_ series in {expr!r}"
    labels = set().union(*(METRICS[m][1] for m in used))
    if any(METRICS[m][0] == "histogram" for m in used):
        labels.add("le")
    grouped = {
        label.strip()
        for clause in re.findall(r"\bby \(([^)]*)\)", expr)
        for label in clause.split(",")
    }
    matched = set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"", expr))
    assert grouped | matched <= labels, expr


def test_the_dashboard_shows_every_metric_and_the_asked_for_panels():
    doc = dashboard()
    used = {metric_of(s) for expr in queries() for s in SERIES.findall(expr)}
    assert used == set(METRICS)
    titles = {p["title"] for p in panels(doc) if p["type"] != "row"}
    assert {
        "Progress per EvalTask",
        "Results: model x task",
        "Failed runs",
        "Run durations",
    } <= titles
    # Any Prometheus works: every panel and target names the dashboard's datasource variable.
    for panel in panels(doc):
        for holder in [panel, *panel.get("targets", [])]:
            if "datasource" in holder:
                assert holder["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert doc["uid"] == "eval-operator"
