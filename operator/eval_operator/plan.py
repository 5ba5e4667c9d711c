"""Desired runs vs observed Jobs -> the runs' states and the actions of one pass.

Design notes:
- The Jobs that exist (found by the EvalTask's uid label) are the truth. The previous
  status only fills in results whose Job is gone, so a finished run never runs twice.
- Serial per model: a model's chain is busy while any of its Jobs is unfinished; an idle
  chain starts its first unfinished run in `tasks` order. At most `parallelism` chains
  are busy at once.
- A pass never creates and deletes: deletions (stale fingerprints, reruns) go first and
  the Job watch brings the next pass, so a rerun's new Job never meets its old one.
- Creations per pass are capped, so a huge EvalTask is started over several passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from eval_operator import constants, jobstate, naming, spec, statustypes

MAX_CREATES_PER_PASS: Final = 20


@dataclass(frozen=True)
class Observed:
    """What one pass sees: the EvalTask, its Jobs and pods, and the clock."""

    evaltask: Mapping[str, Any]
    jobs: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    now: datetime

    @property
    def name(self) -> str:
        return str(self.evaltask["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.evaltask["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.evaltask["metadata"]["uid"])

    @property
    def generation(self) -> int:
        return int(self.evaltask["metadata"].get("generation", 0))

    @property
    def annotations(self) -> Mapping[str, str]:
        annotations: Mapping[str, str] = self.evaltask["metadata"].get("annotations") or {}
        return annotations

    @property
    def previous_status(self) -> Mapping[str, Any]:
        status: Mapping[str, Any] = self.evaltask.get("status") or {}
        return status


@dataclass(frozen=True)
class DesiredRun:
    model: spec.ModelService
    task: spec.TaskConfig
    fingerprint: str
    job_name: str


@dataclass
class Plan:
    runs: list[dict[str, Any]] = field(default_factory=list)  # statustypes.RunStatus dicts
    create: list[DesiredRun] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    suspend: list[str] = field(default_factory=list)
    unsuspend: list[str] = field(default_factory=list)
    rerun_handled: bool = False


def desired_runs(evalspec: spec.EvalTaskSpec, evaltask: str) -> list[DesiredRun]:
    """Every (model, task) pair, model-major, tasks in list order."""
    runs = []
    for model in evalspec.models:
        for task in evalspec.tasks:
            fp = naming.fingerprint(evalspec, model, task)
            runs.append(
                DesiredRun(model, task, fp, naming.job_name(evaltask, model.name, task.name, fp))
            )
    return runs


def _label(job: Mapping[str, Any], key: str) -> str:
    return str((job["metadata"].get("labels") or {}).get(key, ""))


def _run_key(job: Mapping[str, Any]) -> tuple[str, str, str]:
    return (
        _label(job, constants.LABEL_MODEL),
        _label(job, constants.LABEL_TASK),
        _label(job, constants.LABEL_FINGERPRINT),
    )


def _terminating(job: Mapping[str, Any]) -> bool:
    return bool(job["metadata"].get("deletionTimestamp"))


def _status_entry(run: DesiredRun, outcome: jobstate.JobOutcome) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model": run.model.name,
        "task": run.task.name,
        "state": outcome.state,
        "job": run.job_name,
        "fingerprint": run.fingerprint,
        "attempts": outcome.attempts,
        "metrics": dict(outcome.metrics),
        "message": outcome.message,
    }
    if outcome.start_time:
        entry["startTime"] = outcome.start_time
    if outcome.completion_time:
        entry["completionTime"] = outcome.completion_time
    if outcome.reused_from:
        entry["reusedFrom"] = outcome.reused_from
    return entry


RunKey = tuple[str, str, str]  # (model, task, fingerprint)


def reusable_runs(
    evaltask: str, others: Sequence[Mapping[str, Any]]
) -> dict[RunKey, jobstate.JobOutcome]:
    """Succeeded runs of the namespace's other EvalTasks, by (model, task, fingerprint)."""
    found: dict[RunKey, jobstate.JobOutcome] = {}
    for other in sorted(others, key=lambda o: str(o["metadata"]["name"])):
        name = str(other["metadata"]["name"])
        if name == evaltask:
            continue
        for run in (other.get("status") or {}).get("runs") or []:
            key = (run.get("model"), run.get("task"), run.get("fingerprint"))
            if run.get("state") == "Succeeded" and key not in found:
                found[key] = jobstate.JobOutcome(
                    "Reused",
                    start_time=run.get("startTime"),
                    completion_time=run.get("completionTime"),
                    metrics=dict(run.get("metrics") or {}),
                    reused_from=name,
                )
    return found


def plan(
    evalspec: spec.EvalTaskSpec,
    observed: Observed,
    reusable: Mapping[RunKey, jobstate.JobOutcome] | None = None,
    unreachable: Mapping[str, str] | None = None,
) -> Plan:
    """The runs' states and this pass's actions.

    `reusable`: results of other EvalTasks a run may take (spec.reuse). `unreachable`:
    model name -> why its URL did not answer the probe; such a chain does not start.
    """
    result = Plan()
    reusable = reusable or {}
    unreachable = unreachable or {}
    desired = desired_runs(evalspec, observed.name)
    wanted = {(r.model.name, r.task.name, r.fingerprint) for r in desired}
    live = {_run_key(j): j for j in observed.jobs if not _terminating(j)}
    terminating = {_run_key(j) for j in observed.jobs if _terminating(j)}
    previous = {
        (r.get("model"), r.get("task"), r.get("fingerprint")): r
        for r in observed.previous_status.get("runs") or []
    }

    # Jobs of runs that no longer exist or whose fingerprint changed.
    result.delete += [j["metadata"]["name"] for key, j in live.items() if key not in wanted]

    rerun = observed.annotations.get(constants.ANNOTATION_RERUN)
    if rerun in (constants.RERUN_FAILED, constants.RERUN_ALL):
        result.rerun_handled = True

    busy_models: set[str] = set()
    for run in desired:
        key = (run.model.name, run.task.name, run.fingerprint)
        job = live.get(key)
        old = previous.get(key)
        if job is not None:
            outcome = jobstate.describe(job, observed.pods)
        elif old is not None and old.get("state") in statustypes.TERMINAL_STATES:
            outcome = _from_status(old)
        elif key in reusable:
            outcome = reusable[key]
        elif key in terminating:
            outcome = jobstate.JobOutcome(
                "Pending", message="waiting for its previous Job to be deleted"
            )
        else:
            outcome = jobstate.JobOutcome("Pending")
        if result.rerun_handled and (rerun == constants.RERUN_ALL or outcome.state == "Failed"):
            if job is not None:
                result.delete.append(job["metadata"]["name"])
                job = None
            outcome = jobstate.JobOutcome("Pending", message="rerun requested")
        if (job is not None and not jobstate.is_finished(job)) or key in terminating:
            busy_models.add(run.model.name)
        result.runs.append(_status_entry(run, outcome))
        if job is not None and not jobstate.is_finished(job):
            _plan_suspension(evalspec, job, result)

    if result.delete or evalspec.suspend:
        return result
    _plan_creates(evalspec, desired, result, busy_models, live, unreachable)
    return result


def _from_status(old: Mapping[str, Any]) -> jobstate.JobOutcome:
    return jobstate.JobOutcome(
        state=str(old["state"]),
        attempts=int(old.get("attempts", 0)),
        start_time=old.get("startTime"),
        completion_time=old.get("completionTime"),
        metrics=dict(old.get("metrics") or {}),
        message=str(old.get("message", "")),
    )


def _plan_suspension(evalspec: spec.EvalTaskSpec, job: Mapping[str, Any], result: Plan) -> None:
    """Suspend our running Jobs for spec.suspend; resume only the ones we suspended."""
    suspended = bool(job.get("spec", {}).get("suspend"))
    ours = (job["metadata"].get("annotations") or {}).get(
        constants.ANNOTATION_SUSPENDED_BY_OPERATOR
    ) == "true"
    if evalspec.suspend and not suspended:
        result.suspend.append(job["metadata"]["name"])
    elif not evalspec.suspend and suspended and ours:
        result.unsuspend.append(job["metadata"]["name"])


def _plan_creates(
    evalspec: spec.EvalTaskSpec,
    desired: list[DesiredRun],
    result: Plan,
    busy_models: set[str],
    live: Mapping[tuple[str, str, str], Mapping[str, Any]],
    unreachable: Mapping[str, str],
) -> None:
    limit = evalspec.parallelism or len(evalspec.models)
    active = len(busy_models)
    entries = {(e["model"], e["task"]): e for e in result.runs}
    for model in evalspec.models:
        if active >= limit or len(result.create) >= MAX_CREATES_PER_PASS:
            return
        if model.name in busy_models:
            continue
        for run in (r for r in desired if r.model.name == model.name):
            entry = entries[(run.model.name, run.task.name)]
            if entry["state"] in statustypes.TERMINAL_STATES:
                continue
            if model.name in unreachable:
                entry["message"] = (
                    f"waiting for the model service to answer: {unreachable[model.name]}"
                )
            elif (run.model.name, run.task.name, run.fingerprint) not in live:
                result.create.append(run)
                active += 1
            break
