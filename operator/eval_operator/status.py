"""Runs -> the EvalTask's status: phase, progress, counts, leaderboard, conditions.

Pure: the same runs and previous status give the same status, so reconcile can compare
and write only when something changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from eval_operator import conditions, spec, statustypes


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaderboard(
    evalspec: spec.EvalTaskSpec, runs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Models ranked by the weighted mean of their tasks' primary metric.

    A task counts for a model once its run has the primary metric (the task's
    primaryMetric, or the run's first metric). Equal scores share a rank (1, 1, 3).
    """
    tasks = {t.name: t for t in evalspec.tasks}
    scores: list[tuple[str, float, int]] = []
    for model in evalspec.models:
        total = weights = 0.0
        count = 0
        for run in runs:
            if run["model"] != model.name or run["state"] not in ("Succeeded", "Reused"):
                continue
            task = tasks.get(run["task"])
            metrics = run.get("metrics") or {}
            if task is None or not metrics:
                continue
            metric = task.primary_metric or next(iter(metrics))
            if metric not in metrics:
                continue
            total += task.weight * metrics[metric]
            weights += task.weight
            count += 1
        if count and weights > 0:
            scores.append((model.name, total / weights, count))
    scores.sort(key=lambda s: (-s[1], s[0]))
    return [
        {
            "model": name,
            "score": score,
            "rank": 1 + sum(1 for other in scores if other[1] > score),
            "tasks": count,
        }
        for name, score, count in scores
    ]


def summarize(
    evalspec: spec.EvalTaskSpec,
    runs: list[dict[str, Any]],
    previous: Mapping[str, Any],
    generation: int,
    now: datetime,
    reachability: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The status of a valid EvalTask whose runs are as given.

    `reachability` (model -> "" or why it did not answer) is given when this pass probed
    models; otherwise ModelReachable keeps what the last probe found.
    """
    stamp = timestamp(now)
    states = [r["state"] for r in runs]
    total = len(runs)
    failed = states.count("Failed")
    succeeded = states.count("Succeeded") + states.count("Reused")
    completed = failed + succeeded
    started = [r["startTime"] for r in runs if r.get("startTime")]
    done = completed == total

    if done:
        phase = "Failed" if failed else "Succeeded"
    elif evalspec.suspend:
        phase = "Suspended"
    elif started or completed:
        phase = "Running"
    else:
        phase = "Pending"

    conds = previous.get("conditions") or []
    conds = conditions.set_condition(
        conds,
        conditions.SPEC_VALID,
        True,
        conditions.SPEC_ACCEPTED,
        "the spec is valid",
        generation,
        stamp,
    )
    if done:
        progressing = (False, conditions.ALL_RUNS_FINISHED, f"all {total} runs finished")
    elif evalspec.suspend:
        progressing = (False, conditions.SUSPENDED, "spec.suspend is true: no new Jobs start")
    elif "Running" in states:
        progressing = (True, conditions.RUNS_IN_PROGRESS, f"{completed}/{total} runs finished")
    else:
        progressing = (
            True,
            conditions.RUNS_WAITING,
            f"{completed}/{total} runs finished; the next runs are waiting to start",
        )
    conds = conditions.set_condition(conds, conditions.PROGRESSING, *progressing, generation, stamp)
    failed_runs = [f"{r['model']}/{r['task']}" for r in runs if r["state"] == "Failed"]
    if done and failed_runs:
        complete = (
            True,
            conditions.RUNS_FAILED,
            f"{len(failed_runs)} of {total} runs failed: " + ", ".join(failed_runs),
        )
    elif done:
        complete = (True, conditions.ALL_RUNS_SUCCEEDED, f"all {total} runs succeeded")
    else:
        complete = (False, conditions.RUNS_REMAINING, f"{total - completed} runs remaining")
    conds = conditions.set_condition(conds, conditions.COMPLETE, *complete, generation, stamp)
    if reachability is not None:
        silent = {m: why for m, why in reachability.items() if why}
        if silent:
            reachable = (
                False,
                conditions.MODEL_UNREACHABLE,
                "; ".join(f"{m} does not answer: {why}" for m, why in sorted(silent.items())),
            )
        else:
            reachable = (True, conditions.MODELS_ANSWER, "every probed model URL answers")
        conds = conditions.set_condition(
            conds, conditions.MODEL_REACHABLE, *reachable, generation, stamp
        )

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "progress": f"{completed}/{total}",
        "total": total,
        "completed": completed,
        "succeeded": succeeded,
        "failed": failed,
        "runs": runs,
        "leaderboard": leaderboard(evalspec, runs),
        "conditions": conds,
    }
    start = previous.get("startTime") or (min(started) if started else None)
    if start:
        status["startTime"] = start
    if done:
        ends = [r["completionTime"] for r in runs if r.get("completionTime")]
        status["completionTime"] = previous.get("completionTime") or (max(ends) if ends else stamp)
    return status


def invalid(
    problems_message: str,
    reason: str,
    previous: Mapping[str, Any],
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """The status of an EvalTask whose spec is invalid: Failed, nothing runs."""
    stamp = timestamp(now)
    conds = previous.get("conditions") or []
    conds = conditions.set_condition(
        conds, conditions.SPEC_VALID, False, reason, problems_message, generation, stamp
    )
    conds = conditions.set_condition(
        conds,
        conditions.PROGRESSING,
        False,
        conditions.SPEC_INVALID,
        "nothing runs until the spec is fixed",
        generation,
        stamp,
    )
    return {
        **{k: v for k, v in previous.items() if k not in ("conditions", "completionTime")},
        "observedGeneration": generation,
        "phase": "Failed",
        "conditions": conds,
    }


def validate(status: Mapping[str, Any]) -> statustypes.EvalTaskStatus:
    """Check a status dict against the schema the CRD publishes."""
    return statustypes.EvalTaskStatus.model_validate(status)
