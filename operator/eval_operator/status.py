"""Runs -> the EvalTask's status: phase, progress, counts, leaderboard, conditions.

Pure: the same runs and previous status give the same status, so reconcile can compare
and write only when something changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from eval_operator import conditions, records, spec, statustypes


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaderboard(
    evalspec: spec.EvalTaskSpec, entries: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Models ranked by the weighted mean (task weights) of their runs' scores.

    A task counts for a model once its run has a score (Succeeded or Reused, with the
    metrics its primaryMetric or metricWeights name). Equal scores share a rank (1, 1, 3).
    """
    tasks = {t.name: t for t in evalspec.tasks}
    scores: list[tuple[str, float, int]] = []
    for model in evalspec.models:
        total = weights = 0.0
        count = 0
        for run in entries:
            if run["model"] != model.name or run["state"] not in ("Succeeded", "Reused"):
                continue
            task = tasks.get(run["task"])
            if task is None or run.get("score") is None:
                continue
            total += task.weight * float(run["score"])
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


def _listed(names: Sequence[str], limit: int = 20) -> str:
    """ "a, b, c" for at most `limit` names, then how many more: messages stay bounded."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def summarize(
    evalspec: spec.EvalTaskSpec,
    views: Sequence[Any],
    previous: Mapping[str, Any],
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """The status of a valid EvalTask whose runs are as the plan left them (plan.RunView)."""
    stamp = timestamp(now)
    entries = [records.entry(v.run.model.name, v.run.task.name, v.record) for v in views]
    states = [e["state"] for e in entries]
    total = len(entries)
    failed = states.count("Failed")
    succeeded = states.count("Succeeded") + states.count("Reused")
    completed = failed + succeeded
    started = [v.record.start_time for v in views if v.record.start_time]
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
        waiting = next((v.record.message for v in views if not v.record.final), "")
        progressing = (
            True,
            conditions.RUNS_WAITING,
            f"{completed}/{total} runs finished; the next runs are waiting to start"
            + (f" ({records.bounded(waiting, 512)})" if waiting else ""),
        )
    conds = conditions.set_condition(conds, conditions.PROGRESSING, *progressing, generation, stamp)
    failed_runs = [f"{e['model']}/{e['task']}" for e in entries if e["state"] == "Failed"]
    if done and failed_runs:
        complete = (
            True,
            conditions.RUNS_FAILED,
            f"{len(failed_runs)} of {total} runs failed: {_listed(failed_runs)}",
        )
    elif done:
        complete = (True, conditions.ALL_RUNS_SUCCEEDED, f"all {total} runs succeeded")
    else:
        complete = (False, conditions.RUNS_REMAINING, f"{total - completed} runs remaining")
    conds = conditions.set_condition(conds, conditions.COMPLETE, *complete, generation, stamp)
    if evalspec.probe:
        silent = sorted(
            {v.run.model.name: v.waiting_for_model for v in views if v.waiting_for_model}.items()
        )
        if silent:
            reachable = (
                False,
                conditions.MODEL_UNREACHABLE,
                "waiting for models to answer: "
                + _listed([f"{m} (for {s:.0f}s)" for m, s in silent]),
            )
        else:
            reachable = (True, conditions.MODELS_ANSWER, "no run is waiting for its model")
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
        "runs": entries,
        "leaderboard": leaderboard(evalspec, entries),
        "conditions": conds,
    }
    start = previous.get("startTime") or (min(started) if started else None)
    if start:
        status["startTime"] = start
    if done:
        ends = [v.record.completion_time for v in views if v.record.completion_time]
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
