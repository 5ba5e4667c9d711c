"""The largest objects the operator writes stay far below etcd's limit (1.5 MiB).

Computed, not sampled: the EvalTask at the largest matrix the CRD admits with every name
and URL at its maximum length, its status with every run failed; and the EvalRun with the
most metrics, the longest names and message the CRD admits. Both are validated against
the models the CRDs are generated from, so what is measured is what the API server would
store. Free-form strings the user writes (env values, args) have no bound of their own:
they are the user's, bounded by the API server's request limit, and are left short here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from eval_operator import plan, records, runtypes, spec, status, statustypes

T = datetime(2026, 1, 1, tzinfo=UTC)
LONGEST_FLOAT = -1.2345678901234567e-300  # the longest repr a double has
EVALTASK_LIMIT = 512 * 1024
EVALRUN_LIMIT = 64 * 1024


def label(prefix: str, i: int) -> str:
    return f"{prefix}{i:03d}".ljust(63, "x")


def largest_evaltask() -> dict:
    models, tasks = spec.MAX_MODELS, spec.MAX_RUNS // spec.MAX_MODELS
    doc = {
        "models": [
            {
                "name": label("m", i),
                "url": "https://h/" + "p" * (2048 - len("https://h/")),
                "auth": {"secretRef": {"name": "s" * 253, "key": "k" * 253}},
                "tls": {"caConfigMap": {"name": "c" * 253, "key": "k" * 253}},
            }
            for i in range(models)
        ],
        "tasks": [
            {
                "name": label("t", i),
                "image": "i" * 512,
                # Larger than any primaryMetric: the most weighted metrics, longest names.
                "metricWeights": {
                    f"{j:02d}".ljust(spec.MAX_METRIC_NAME, "a"): -LONGEST_FLOAT
                    for j in range(spec.MAX_WEIGHTED_METRICS)
                },
            }
            for i in range(tasks)
        ],
    }
    evalspec = spec.parse_spec(doc)
    views = [
        plan.RunView(
            plan.DesiredRun(m, t, "f" * 16, "n" * 63),
            records.Record(state="Failed", message="x" * statustypes.MAX_MESSAGE),
            exists=True,
        )
        for m in evalspec.models
        for t in evalspec.tasks
    ]
    the_status = status.summarize(evalspec, views, {}, 1, T)
    status.validate(the_status)
    return {"metadata": {"name": "e" * 253}, "spec": doc, "status": the_status}


def largest_evalrun() -> dict:
    the_status = {
        "state": "Succeeded",
        "job": "j" * 63,
        "attempts": 101,
        "startTime": "2026-01-01T00:00:00Z",
        "completionTime": "2026-01-01T00:00:00Z",
        "metrics": [
            {"name": f"{i:03d}".ljust(runtypes.MAX_METRIC_NAME, "m"), "value": LONGEST_FLOAT}
            for i in range(runtypes.MAX_METRICS)
        ],
        "score": LONGEST_FLOAT,
        "progress": {"done": 2**62, "total": 2**62, "updateTime": "2026-01-01T00:00:00Z"},
        "message": "x" * statustypes.MAX_MESSAGE,
        "reusedFrom": "r" * 317,
    }
    runtypes.EvalRunStatus.model_validate(the_status)
    return {
        "metadata": {
            "name": "n" * 63,
            "labels": {f"evaloperator.io/{k}": "v" * 63 for k in "abcd"},
        },
        "spec": {"model": "m" * 63, "task": "t" * 63, "fingerprint": "f" * 64},
        "status": the_status,
    }


def size(obj: dict) -> int:
    return len(json.dumps(obj, ensure_ascii=False).encode())


def test_the_largest_evaltask_stays_under_512_kib():
    assert size(largest_evaltask()) < EVALTASK_LIMIT


def test_the_largest_evalrun_stays_under_64_kib():
    assert size(largest_evalrun()) < EVALRUN_LIMIT


def test_the_bounds_are_the_ones_the_collector_enforces():
    from eval_runner import results

    assert (results.MAX_METRICS, results.MAX_NAME_LENGTH) == (
        runtypes.MAX_METRICS,
        runtypes.MAX_METRIC_NAME,
    )
    assert spec.MAX_METRIC_NAME == runtypes.MAX_METRIC_NAME, "metricWeights names metrics"
