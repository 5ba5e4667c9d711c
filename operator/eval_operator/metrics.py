"""Prometheus metrics of the operator, in one module.

Names share the `eval_operator_` prefix, use base units (seconds, ratios) and `_total` for
counters. Label values are bounded:
- `result` and `state` take the constants below;
- `namespace`, `evaltask`, `model`, `task` follow the EvalTasks that exist: the series of
  an EvalTask go away when it is deleted, and those of a run or metric when an edit
  removes it;
- `metric` is capped at MAX_METRICS_PER_RUN (20) names per run (the first ones, in the
  order metrics.json gives them; all of them stay in its EvalRun), so one run adds at most
  that many `run_metric` series.

The series count, bounded by design:
- per EvalTask, SERIES_PER_EVALTASK = 6: its progress ratio and its runs in each of 5 states;
- per run, at most MAX_SERIES_PER_RUN = 21: a finished run its score and up to 20 metrics,
  a running one its progress (a run is one or the other), a pending one none;
- so an EvalTask of R runs at most 6 + 21 R: 90 for a 4-run one, 21,510 at the CRD's
  1,024-run bound (it was 52,230 at 50 metrics per run);
- besides, the run duration histogram per distinct task name (17: 14 buckets, sum,
  count, created), and the operator's own few (reconcile results, leader, counters).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from prometheus_client import Counter, Gauge, Histogram

from eval_operator.statustypes import RunState

RESULT_OK: Final = "ok"
RESULT_INVALID: Final = "invalid"
RESULT_ERROR: Final = "error"
STATES: Final = tuple(RunState)
MAX_METRICS_PER_RUN: Final = 20
SERIES_PER_EVALTASK: Final = 1 + len(STATES)  # progress ratio, runs by state
MAX_SERIES_PER_RUN: Final = 1 + MAX_METRICS_PER_RUN  # score and metrics, or progress

RECONCILE_TOTAL: Final = Counter(
    "eval_operator_reconcile_total", "Reconcile passes by result.", ["result"]
)
RECONCILE_SECONDS: Final = Histogram(
    "eval_operator_reconcile_duration_seconds", "Duration of one reconcile pass.", ["result"]
)
LEADER: Final = Gauge(
    "eval_operator_leader",
    "1 while this replica holds the leader Lease and reconciles; 0 while it waits.",
)
JOBS_CREATED_TOTAL: Final = Counter(
    "eval_operator_jobs_created_total", "Jobs created for evaluation runs."
)
PROGRESS_RATIO: Final = Gauge(
    "eval_operator_evaltask_progress_ratio",
    "Completed runs / total runs of an EvalTask (0..1).",
    ["namespace", "evaltask"],
)
RUNS: Final = Gauge(
    "eval_operator_evaltask_runs",
    "Runs of an EvalTask by state.",
    ["namespace", "evaltask", "state"],
)
RUN_SECONDS: Final = Histogram(
    "eval_operator_run_duration_seconds",
    "Duration of finished runs (Job start to finish), by task.",
    ["task"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400),
)
RUN_METRIC: Final = Gauge(
    "eval_operator_run_metric",
    "A result metric of a run, as its metrics.json gave it.",
    ["namespace", "evaltask", "model", "task", "metric"],
)

PROGRESS_READS_TOTAL: Final = Counter(
    "eval_operator_progress_log_reads_total",
    "Reads of running task containers' logs (pods/log) for their progress.",
)
RUN_PROGRESS: Final = Gauge(
    "eval_operator_run_progress_ratio",
    "A running run's progress (done / total), as its task's log last told it.",
    ["namespace", "evaltask", "model", "task"],
)

RUN_SCORE: Final = Gauge(
    "eval_operator_run_score",
    "The score of a run (its primaryMetric, or its first metric), once it has one.",
    ["namespace", "evaltask", "model", "task"],
)

_lock = threading.Lock()
# (namespace, evaltask) -> the RUN_METRIC / RUN_SCORE label sets we exported, to remove
# stale ones.
_run_series: dict[tuple[str, str], set[tuple[str, ...]]] = {}
_score_series: dict[tuple[str, str], set[tuple[str, ...]]] = {}
_progress_series: dict[tuple[str, str], set[tuple[str, ...]]] = {}


def record_status(
    namespace: str,
    evaltask: str,
    status: Mapping[str, Any],
    results: Sequence[tuple[str, str, Any]] = (),
) -> None:
    """Export an EvalTask's status (progress, runs by state) and its runs' metrics.

    `results`: (model, task, record) of each run, whose `metrics` are (name, value) pairs.
    """
    total = int(status.get("total") or 0)
    completed = int(status.get("completed") or 0)
    runs = status.get("runs") or []
    series: set[tuple[str, ...]] = set()
    scores: set[tuple[str, ...]] = set()
    running: set[tuple[str, ...]] = set()
    for model, task, record in results:
        done = record.progress if record.state == RunState.RUNNING else None
        if done and int(done.get("total") or 0) > 0:
            run = (namespace, evaltask, str(model), str(task))
            running.add(run)
            RUN_PROGRESS.labels(*run).set(int(done["done"]) / int(done["total"]))
        if record.score is not None:
            scored = (namespace, evaltask, str(model), str(task))
            scores.add(scored)
            RUN_SCORE.labels(*scored).set(float(record.score))
        for name, value in list(record.metrics)[:MAX_METRICS_PER_RUN]:
            labels = (namespace, evaltask, str(model), str(task), str(name))
            series.add(labels)
            RUN_METRIC.labels(*labels).set(float(value))
    with _lock:
        for stale in _run_series.get((namespace, evaltask), set()) - series:
            RUN_METRIC.remove(*stale)
        _run_series[(namespace, evaltask)] = series
        for stale in _score_series.get((namespace, evaltask), set()) - scores:
            RUN_SCORE.remove(*stale)
        _score_series[(namespace, evaltask)] = scores
        for stale in _progress_series.get((namespace, evaltask), set()) - running:
            RUN_PROGRESS.remove(*stale)
        _progress_series[(namespace, evaltask)] = running
    PROGRESS_RATIO.labels(namespace, evaltask).set(completed / total if total else 0.0)
    for state in STATES:
        count = sum(1 for r in runs if r.get("state") == state)
        RUNS.labels(namespace, evaltask, state).set(count)


def forget(namespace: str, evaltask: str) -> None:
    """Remove every series of a deleted EvalTask."""
    with _lock:
        for labels in _run_series.pop((namespace, evaltask), set()):
            RUN_METRIC.remove(*labels)
        for labels in _score_series.pop((namespace, evaltask), set()):
            RUN_SCORE.remove(*labels)
        for labels in _progress_series.pop((namespace, evaltask), set()):
            RUN_PROGRESS.remove(*labels)
    for gauge, extra in ((PROGRESS_RATIO, [()]), (RUNS, [(s,) for s in STATES])):
        for suffix in extra:
            # KeyError: never exported, e.g. deleted before its first pass.
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, evaltask, *suffix)


def observe_run(task: str, seconds: float) -> None:
    RUN_SECONDS.labels(task).observe(max(seconds, 0.0))
