"""Runs -> the EvalTask's status: phase, progress, counts, leaderboard, conditions.

Pure: the same runs and previous status give the same status, so reconcile can compare
and write only when something changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from eval_operator import conditions, records, spec, statustypes
from eval_operator.statustypes import Phase, RunState


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str) -> datetime:
    """A time as the API server writes it (timestamp's form, or with an offset)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Wait:
    """Why the runs still to start wait for the cluster (ReadyToStart=False says it).

    `reason`: SecretNotFound, ConfigMapNotFound, their key variants, JobRefused, or
    TaskConfigNotFound.
    `checked`: False while admission refuses the server-side dry-run, so whether the API
    server accepts the Jobs is not known yet (SpecValid=Unknown until it says)."""

    reason: str
    message: str
    checked: bool = True


def waiting_since(previous: Mapping[str, Any], reason: str) -> str | None:
    """When the wait for `reason` began, as the status written last says; None: no such
    wait is on."""
    cond = conditions.get(previous.get("conditions") or [], conditions.READY_TO_START)
    if cond is None or cond.get("status") != "False" or cond.get("reason") != reason:
        return None
    since = cond.get("lastTransitionTime")
    return str(since) if since else None


def _job_refusals(views: Sequence[Any]) -> Wait | None:
    """The wait of runs whose Job create admission refused: their records say so."""
    refused = [
        v for v in views if not v.record.final and v.record.message.startswith(records.JOB_REFUSED)
    ]
    if not refused:
        return None
    where = _listed([f"{v.run.model.name}/{v.run.task.name}" for v in refused], limit=5)
    return Wait(conditions.JOB_REFUSED, f"{where}: {refused[0].record.message}")


def _ready_to_start(
    conds: list[dict[str, Any]], wait: Wait | None, generation: int, stamp: str
) -> list[dict[str, Any]]:
    old = conditions.get(conds, conditions.READY_TO_START)
    if wait is None:
        if old is None:
            return conds  # nothing ever waited: no condition to show
        return conditions.set_condition(
            conds,
            conditions.READY_TO_START,
            True,
            conditions.NOTHING_BLOCKS,
            "nothing in the cluster keeps the runs still to start from starting",
            generation,
            stamp,
        )
    conds = conditions.set_condition(
        conds, conditions.READY_TO_START, False, wait.reason, wait.message, generation, stamp
    )
    if old is not None and old.get("status") == "False" and old.get("reason") != wait.reason:
        # A wait for something else is a new wait: its backoff and its bound start now.
        conds = [
            {**c, "lastTransitionTime": stamp} if c.get("type") == conditions.READY_TO_START else c
            for c in conds
        ]
    return conds


def leaderboard(
    evalspec: spec.EvalTaskSpec, entries: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Models ranked by the weighted mean (task weights) of their runs' scores.

    A task counts for a model once its run has a score (Succeeded or Reused, with the
    metrics its primaryMetric or metricWeights name). Equal scores share a rank (1, 1, 3).
    A model whose mean is no finite number (no positive weight) is not ranked.
    """
    tasks = {t.name: t for t in evalspec.tasks}
    scores: list[tuple[str, float, int]] = []
    for model in evalspec.models:
        pairs: list[tuple[float, float]] = []
        for run in entries:
            if run["model"] != model.name or run["state"] not in statustypes.SCORED_STATES:
                continue
            task = tasks.get(run["task"])
            if task is None or run.get("score") is None:
                continue
            pairs.append((float(run["score"]), float(task.weight)))
        mean = records.weighted_mean(pairs) if pairs else None
        if mean is not None:
            scores.append((model.name, mean, len(pairs)))
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
    refused: Mapping[str, str] | None = None,
    wait: Wait | None = None,
) -> dict[str, Any]:
    """The status of a valid EvalTask whose runs are as the plan left them (plan.RunView).

    `refused`: "model/task" -> why, for the runs of which the API server refused every
    record in this pass (RecordsWritten says so). `wait`: why the runs still to start
    wait for the cluster, as reconcile found it (references, the dry-run); else the runs
    whose Job create was refused, if any, say it.
    """
    stamp = timestamp(now)
    entries = [records.entry(v.run.model.name, v.run.task.name, v.record) for v in views]
    states = [e["state"] for e in entries]
    total = len(entries)
    failed = states.count(RunState.FAILED)
    succeeded = states.count(RunState.SUCCEEDED) + states.count(RunState.REUSED)
    completed = failed + succeeded
    started = [v.record.start_time for v in views if v.record.start_time]
    done = completed == total

    if done:
        phase = Phase.FAILED if failed else Phase.SUCCEEDED
    elif evalspec.suspend:
        phase = Phase.SUSPENDED
    elif started or completed:
        phase = Phase.RUNNING
    else:
        phase = Phase.PENDING

    blocker = wait or _job_refusals(views)
    conds = previous.get("conditions") or []
    if wait is not None and wait.reason == conditions.CONFIG_NOT_FOUND:
        # A task that is not resolved yet cannot be judged (nor dry-run).
        spec_valid: tuple[bool | None, str, str] = (
            None,
            conditions.CONFIG_NOT_FOUND,
            "not known yet: a task's configRef names a task configuration that does not "
            "exist or is no valid task (ReadyToStart says which); judged once it does",
        )
    elif wait is not None and not wait.checked:
        # The cached verdict of the dry-run (reconcile._kept_verdict) is True or False:
        # Unknown has it made again.
        spec_valid = (
            None,
            conditions.JOB_REFUSED,
            "not known yet: admission refuses the server-side dry-run of its Jobs for now "
            "(ReadyToStart says why); it is made again with the next check",
        )
    else:
        spec_valid = (True, conditions.SPEC_ACCEPTED, "the spec is valid")
    conds = conditions.set_condition(conds, conditions.SPEC_VALID, *spec_valid, generation, stamp)
    if done:
        progressing = (False, conditions.ALL_RUNS_FINISHED, f"all {total} runs finished")
    elif evalspec.suspend:
        progressing = (False, conditions.SUSPENDED, "spec.suspend is true: no new Jobs start")
    elif RunState.RUNNING in states:
        progressing = (
            True,
            conditions.RUNS_IN_PROGRESS,
            f"{completed}/{total} runs finished"
            + (f"; others wait: {records.bounded(blocker.message, 512)}" if blocker else ""),
        )
    else:
        # The wait that says why: the cluster's (ReadyToStart), else the first run's.
        waiting = (
            blocker.message
            if blocker
            else next(
                (v.record.message for v in views if not v.record.final and v.record.message), ""
            )
        )
        progressing = (
            True,
            conditions.RUNS_WAITING,
            f"{completed}/{total} runs finished; the next runs are waiting to start"
            + (f" ({records.bounded(waiting, 512)})" if waiting else ""),
        )
    conds = conditions.set_condition(conds, conditions.PROGRESSING, *progressing, generation, stamp)
    failed_runs = [f"{e['model']}/{e['task']}" for e in entries if e["state"] == RunState.FAILED]
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

    conds = _ready_to_start(conds, blocker, generation, stamp)
    conds = _records_written(conds, views, refused or {}, generation, stamp)

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


def _records_written(
    conds: list[dict[str, Any]],
    views: Sequence[Any],
    refused: Mapping[str, str],
    generation: int,
    stamp: str,
) -> list[dict[str, Any]]:
    """RecordsWritten: False while a run's record was refused, in this pass or (recorded as
    Failed instead, see records.refused_record) until that run reruns."""
    lost = {where: f"not recorded: {why}" for where, why in refused.items()}
    for v in views:
        if v.record.message.startswith(records.REFUSED_RECORD):
            lost.setdefault(f"{v.run.model.name}/{v.run.task.name}", "recorded as Failed")
    if lost:
        listed = _listed([f"{where}: {what}" for where, what in lost.items()], limit=5)
        return conditions.set_condition(
            conds,
            conditions.RECORDS_WRITTEN,
            False,
            conditions.RECORD_WRITE_REFUSED,
            f"the API server refused the records of {len(lost)} "
            f"{'run' if len(lost) == 1 else 'runs'} ({listed}); a run recorded as Failed "
            "says why in its EvalRun, one not recorded is written again at each pass",
            generation,
            stamp,
        )
    if conditions.get(conds, conditions.RECORDS_WRITTEN) is None:
        return conds  # nothing was ever refused: no condition to show
    return conditions.set_condition(
        conds,
        conditions.RECORDS_WRITTEN,
        True,
        conditions.RECORDS_ACCEPTED,
        "the API server accepted every record and the status",
        generation,
        stamp,
    )


# What the small status keeps when the whole one is refused: counts and conditions, all
# bounded; not the runs and the leaderboard, which grow with the matrix and hold numbers.
_KEPT_WHEN_REFUSED: Final = (
    "observedGeneration",
    "phase",
    "progress",
    "total",
    "completed",
    "succeeded",
    "failed",
    "startTime",
    "completionTime",
)


def refused_status(
    new: Mapping[str, Any],
    previous: Mapping[str, Any],
    words: str,
    generation: int,
    now: datetime,
    bare: bool = False,
) -> dict[str, Any]:
    """The status written instead of `new` when the API server refused it for good (too
    large, invalid): what it can still say, and RecordsWritten=False saying why.

    `bare`: when that was refused too: only the condition, without the server's words.
    """
    stamp = timestamp(now)
    old = conditions.get(previous.get("conditions") or [], conditions.RECORDS_WRITTEN)
    # From the condition as written last, not as `new` has it: its time moves on a flip only.
    conds = (
        []
        if bare
        else [c for c in new.get("conditions") or [] if c.get("type") != conditions.RECORDS_WRITTEN]
    )
    if old is not None:
        conds.append(dict(old))
    message = (
        "the API server refused this EvalTask's status"
        + ("" if bare else f": {words}")
        + "; each run's record is in its EvalRun"
    )
    conds = conditions.set_condition(
        conds,
        conditions.RECORDS_WRITTEN,
        False,
        conditions.STATUS_WRITE_REFUSED,
        message,
        generation,
        stamp,
    )
    kept = {} if bare else {k: new[k] for k in _KEPT_WHEN_REFUSED if k in new}
    return {**kept, "observedGeneration": generation, "conditions": conds}


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
        "phase": Phase.FAILED,
        "conditions": conds,
    }


def validate(status: Mapping[str, Any]) -> statustypes.EvalTaskStatus:
    """Check a status dict against the schema the CRD publishes."""
    return statustypes.EvalTaskStatus.model_validate(status)
