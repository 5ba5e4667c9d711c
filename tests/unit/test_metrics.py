"""Status -> Prometheus series: values, stale series removed, deleted EvalTasks forgotten."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from eval_operator import metrics, records


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


def run(model, task, state, metrics_=None):
    return (model, task, records.Record(state=state, metrics=tuple((metrics_ or {}).items())))


def record_status(namespace, evaltask, runs):
    """Export as a pass does: the compact status plus each run's record."""
    entries = [records.entry(m, t, r) for m, t, r in runs]
    completed = sum(r.final for _, _, r in runs)
    status = {"total": len(runs), "completed": completed, "runs": entries}
    metrics.record_status(namespace, evaltask, status, runs)


def test_progress_runs_by_state_and_result_metrics():
    record_status(
        "ns",
        "et",
        [
            run("m1", "t1", "Succeeded", {"accuracy": 0.85, "准确率": 0.5}),
            run("m1", "t2", "Running"),
            run("m2", "t1", "Failed"),
            run("m2", "t2", "Pending"),
        ],
    )
    assert value("eval_operator_evaltask_progress_ratio", namespace="ns", evaltask="et") == 0.5
    for state, count in {
        "Succeeded": 1,
        "Running": 1,
        "Failed": 1,
        "Pending": 1,
        "Reused": 0,
    }.items():
        assert (
            value("eval_operator_evaltask_runs", namespace="ns", evaltask="et", state=state)
            == count
        )
    labels = {"namespace": "ns", "evaltask": "et", "model": "m1", "task": "t1"}
    assert value("eval_operator_run_metric", metric="accuracy", **labels) == 0.85
    assert value("eval_operator_run_metric", metric="准确率", **labels) == 0.5
    metrics.forget("ns", "et")


def test_series_of_removed_runs_and_deleted_evaltasks_go_away():
    labels = {"namespace": "ns", "evaltask": "gone", "model": "m1", "task": "t1"}
    record_status("ns", "gone", [run("m1", "t1", "Succeeded", {"a": 1, "b": 2})])
    record_status("ns", "gone", [run("m1", "t1", "Succeeded", {"a": 3})])
    assert value("eval_operator_run_metric", metric="a", **labels) == 3
    assert value("eval_operator_run_metric", metric="b", **labels) is None
    metrics.forget("ns", "gone")
    assert value("eval_operator_run_metric", metric="a", **labels) is None
    assert value("eval_operator_evaltask_progress_ratio", namespace="ns", evaltask="gone") is None
    assert (
        value("eval_operator_evaltask_runs", namespace="ns", evaltask="gone", state="Succeeded")
        is None
    )
    metrics.forget("ns", "never-seen")  # forgetting an unknown EvalTask is fine


def test_metrics_per_run_are_capped():
    many = {f"m{i}": float(i) for i in range(metrics.MAX_METRICS_PER_RUN + 20)}
    record_status("ns", "wide", [run("m1", "t1", "Succeeded", many)])
    exported = next(s for s in REGISTRY.collect() if s.name == "eval_operator_run_metric")
    mine = [s for s in exported.samples if s.labels["evaltask"] == "wide"]
    assert len(mine) == metrics.MAX_METRICS_PER_RUN
    metrics.forget("ns", "wide")


def test_each_scored_run_exports_its_score_and_loses_it_with_its_run():
    scored = (
        "m1",
        "t1",
        records.Record(state="Succeeded", metrics=(("acc", 0.7),), score=0.7),
    )
    record_status("ns", "scored", [scored, run("m1", "t2", "Pending")])
    labels = {"namespace": "ns", "evaltask": "scored", "model": "m1"}
    assert value("eval_operator_run_score", task="t1", **labels) == 0.7
    assert value("eval_operator_run_score", task="t2", **labels) is None
    record_status("ns", "scored", [run("m1", "t2", "Pending")])
    assert value("eval_operator_run_score", task="t1", **labels) is None
    metrics.forget("ns", "scored")


def series_of(evaltask):
    """Every sample exported for one EvalTask, over all metric families."""
    return [
        s
        for family in REGISTRY.collect()
        for s in family.samples
        if s.labels.get("evaltask") == evaltask
    ]


MANY = tuple((f"m{i}", float(i)) for i in range(400))  # as many as an EvalRun holds


@pytest.mark.parametrize(
    ("record", "series"),
    [
        pytest.param(
            records.Record(state="Succeeded", metrics=MANY, score=0.0),
            21,
            id="a finished run with 400 metrics exports its score and its first 20",
        ),
        pytest.param(
            records.Record(state="Running", progress={"done": 1, "total": 4}),
            1,
            id="a running run exports its progress alone",
        ),
        pytest.param(records.Record(state="Pending"), 0, id="a pending run exports nothing"),
    ],
)
def test_one_run_adds_at_most_21_series_and_an_evaltask_6(record, series):
    assert metrics.MAX_METRICS_PER_RUN == 20
    assert (metrics.SERIES_PER_EVALTASK, metrics.MAX_SERIES_PER_RUN) == (6, 21)
    record_status("ns", "bound", [("m1", "t1", record)])
    assert len(series_of("bound")) == metrics.SERIES_PER_EVALTASK + series
    assert series <= metrics.MAX_SERIES_PER_RUN
    metrics.forget("ns", "bound")
    assert series_of("bound") == []
