"""Desired runs vs observed EvalRuns and Jobs -> the runs' records and one pass's actions.

Design notes:
- The EvalRun is the record of a run. Once it is final (Succeeded, Failed, Reused) the
  plan never looks at its Job or pods again: they are evidence that may vanish. A run's
  record changes only through a rerun or a fingerprint change, which delete the EvalRun.
- An unfinished run follows its Job: the Job that its EvalRun owns (by uid), never a
  leftover of an earlier EvalRun of the same name, which is deleted first.
- Serial per model: a model's chain is busy while any of its Jobs is unfinished or still
  being deleted; an idle chain starts its first unfinished run in `tasks` order. At most
  `parallelism` chains are busy at once.
- A pass never creates and deletes: deletions go first and the watch brings the next
  pass, so a rerun's new Job never meets its old one. Creations per pass are capped, so a
  huge EvalTask is started over several passes.
- Nor does a pass create while a rerun request is on the EvalTask: it deletes what the
  request reruns, reconcile removes the request once those deletions are made, and the
  next pass creates. A pass that sees the request again (its removal failed, or the
  operator stopped before it) finds no run that reran for it, so it reruns nothing twice:
  it deletes only what is (still) there of the runs the request names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from eval_operator import (
    constants,
    jobstate,
    manifests,
    naming,
    records,
    runtypes,
    spec,
    taskconfigs,
)
from eval_operator import status as status_mod
from eval_operator.statustypes import RunState

MAX_JOB_CREATES_PER_PASS: Final = 20
MAX_RUN_CREATES_PER_PASS: Final = 100

Record = records.Record
RunKey = tuple[str, str, str]  # (model, task, fingerprint)


@dataclass(frozen=True)
class Observed:
    """What one pass sees: the EvalTask, its EvalRuns, Jobs and pods, and the clock."""

    evaltask: Mapping[str, Any]
    runs: Sequence[Mapping[str, Any]]
    jobs: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    now: datetime
    # Job name -> the Job controller's latest FailedCreate message.
    create_failures: Mapping[str, str] = field(default_factory=dict)
    # Job name -> progress just read from its running task's log (done, total, updateTime).
    progress: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Pod name -> the end of its failed task's log, redacted (reconcile._failed_task_logs).
    task_logs: Mapping[str, str] = field(default_factory=dict)

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
    task: spec.TaskConfig  # resolved: a configRef's task with the entry's overrides
    fingerprint: str
    name: str  # the EvalRun's and its Job's
    # Of a task with a configRef: the config it was resolved from, and the hash of the
    # entry as written (while it stays, the run keeps the task it was created with).
    source: runtypes.ConfigSource | None = None
    entry_fingerprint: str = ""
    # Why the run cannot be created yet (its config does not exist): `task` is then the
    # entry as written, and nothing is created for the run.
    waiting: str = ""

    @property
    def key(self) -> RunKey:
        return (self.model.name, self.task.name, self.fingerprint)

    def resolved(self) -> dict[str, Any] | None:
        """What its EvalRun's spec keeps of a task with a configRef (records.build_evalrun)."""
        if self.source is None:
            return None
        return {
            "configRef": self.source.model_dump(by_alias=True),
            "entryFingerprint": self.entry_fingerprint,
            "taskConfig": self.task.model_dump(by_alias=True, exclude_unset=True),
        }


@dataclass
class RunView:
    """One desired run as this pass leaves it."""

    run: DesiredRun
    record: Record
    exists: bool  # its EvalRun exists (or is created in this pass)
    waiting_for_model: float | None = None
    recheck_after: float | None = None  # seconds until the clock alone changes it


@dataclass
class Plan:
    views: list[RunView] = field(default_factory=list)
    create_runs: list[DesiredRun] = field(default_factory=list)  # EvalRuns, Pending or Reused
    create_jobs: list[DesiredRun] = field(default_factory=list)
    # EvalRun name -> its new status, where it changed.
    record: dict[str, Record] = field(default_factory=dict)
    delete_runs: list[str] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    suspend: list[str] = field(default_factory=list)
    unsuspend: list[str] = field(default_factory=list)
    # Jobs of recorded runs that get their ttlSecondsAfterFinished (see _expires).
    expire_jobs: list[str] = field(default_factory=list)
    rerun: str | None = None  # the rerun annotation's value, when there is one

    @property
    def deletes(self) -> bool:
        return bool(self.delete_runs or self.delete_jobs)


def desired_runs(
    evalspec: spec.EvalTaskSpec,
    evaltask: str,
    lookup: taskconfigs.Lookup | None = None,
    runs: Sequence[Mapping[str, Any]] = (),
) -> list[DesiredRun]:
    """Every (model, task) pair, model-major, tasks in list order.

    A task with a configRef is resolved with `lookup` (the configs as the API server has
    them) unless a live EvalRun in `runs` was created for the entry as it is written now:
    that run keeps the task it was created with. Raises SpecInvalid when an entry and its
    config make no valid task.
    """
    kept = _kept_tasks(runs)
    found: dict[tuple[str, str], taskconfigs.Found | None] = {}
    desired = []
    for model in evalspec.models:
        for ti, task in enumerate(evalspec.tasks):
            ref = task.config_ref
            if ref is None:
                fp = naming.fingerprint(evalspec, model, task)
                name = naming.job_name(evaltask, model.name, task.name, fp)
                desired.append(DesiredRun(model, task, fp, name))
                continue
            entry_fp = naming.fingerprint(evalspec, model, task)
            hit = kept.get((model.name, task.name, entry_fp))
            if hit is not None:
                resolved, source = taskconfigs.merge(task, hit[0]), hit[1]
            else:
                key = (ref.kind, ref.name)
                if key not in found:
                    found[key] = lookup(ref) if lookup is not None else None
                config = found[key]
                if config is None or config.settings is None:
                    why = f"{taskconfigs.describe(ref)} not found"
                    if config is not None:
                        why = f"{taskconfigs.describe(ref)} is no valid task: {config.problem}"
                    name = naming.job_name(evaltask, model.name, task.name, entry_fp)
                    desired.append(DesiredRun(model, task, entry_fp, name, None, entry_fp, why))
                    continue
                try:
                    resolved = taskconfigs.merge(task, config.settings)
                except taskconfigs.ResolveError as e:
                    raise spec.SpecInvalid(
                        [
                            spec.SpecProblem(
                                f"spec.tasks[{ti}].configRef",
                                "ConfigInvalid",
                                f"with {taskconfigs.describe(ref)}: {e}",
                            )
                        ]
                    ) from None
                source = runtypes.ConfigSource(
                    kind=config.kind, name=config.name, resource_version=config.resource_version
                )
            fp = naming.fingerprint(evalspec, model, resolved)
            name = naming.job_name(evaltask, model.name, task.name, fp)
            desired.append(DesiredRun(model, resolved, fp, name, source, entry_fp))
    return desired


def _kept_tasks(
    runs: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str, str], tuple[spec.TaskSettings, runtypes.ConfigSource]]:
    """(model, task, entry fingerprint) -> the task a live EvalRun was created with."""
    kept = {}
    for run in runs:
        body = run.get("spec") or {}
        if _terminating(run) or not body.get("entryFingerprint") or not body.get("taskConfig"):
            continue
        try:
            task = spec.TaskConfig.model_validate(body["taskConfig"])
            source = runtypes.ConfigSource.model_validate(body.get("configRef") or {})
            settings = taskconfigs.settings_of(task)
        except ValidationError:
            continue  # not one this operator wrote: resolved afresh
        key = (str(body.get("model")), str(body.get("task")), str(body["entryFingerprint"]))
        kept[key] = (settings, source)
    return kept


def waiting(desired: Sequence[DesiredRun]) -> list[DesiredRun]:
    """The runs whose config is missing: one per entry (the first model's)."""
    seen: set[str] = set()
    found = []
    for run in desired:
        if run.waiting and run.task.name not in seen:
            seen.add(run.task.name)
            found.append(run)
    return found


def resolved_spec(evalspec: spec.EvalTaskSpec, desired: Sequence[DesiredRun]) -> spec.EvalTaskSpec:
    """The spec with each configRef entry as its first model's run resolved it: what
    the checks (references, the dry-run) and the leaderboard's weights read."""
    if not any(t.config_ref for t in evalspec.tasks):
        return evalspec
    first: dict[str, spec.TaskConfig] = {}
    for run in desired:
        first.setdefault(run.task.name, run.task)
    tasks = [first.get(t.name, t) for t in evalspec.tasks]
    return evalspec.model_copy(update={"tasks": tasks})


def unfinished(desired: Sequence[DesiredRun], observed: Observed) -> int:
    """How many desired runs have no final record yet (the ones references still guard)."""
    runs = records.by_name(observed.runs)
    count = 0
    for run in desired:
        found = runs.get(run.name)
        if found is None or not records.from_status(found.get("status")).final:
            count += 1
    return count


def _terminating(obj: Mapping[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def plan(
    evalspec: spec.EvalTaskSpec,
    observed: Observed,
    reusable: Mapping[RunKey, Mapping[str, Any]] | None = None,
    blocked: str = "",
    start_timeout: float = constants.DEFAULT_START_TIMEOUT_SECONDS,
    desired: Sequence[DesiredRun] | None = None,
    job_ttl: int = 0,
) -> Plan:
    """The runs' records and this pass's actions.

    `reusable`: Succeeded EvalRuns of other EvalTasks by run key (spec.reuse). `blocked`:
    why runs that are still to start must wait (a referenced Secret is gone, say).
    `desired`: desired_runs(evalspec, ...), when the caller has it already. `job_ttl`:
    whether the Jobs of recorded runs get a ttlSecondsAfterFinished (0: they stay).
    """
    result = Plan()
    reusable = reusable or {}
    desired = list(desired) if desired is not None else desired_runs(evalspec, observed.name)
    wanted = {r.name for r in desired}
    runs = records.by_name(observed.runs)
    jobs = records.by_name(observed.jobs)
    pods = jobstate.pods_by_job(observed.pods)
    template = manifests.template_hash(evalspec)

    # EvalRuns (and their Jobs) of runs that no longer exist or whose fingerprint changed.
    for name, obj in runs.items():
        if name not in wanted and not _terminating(obj):
            result.delete_runs.append(name)
    for name, obj in jobs.items():
        if name not in wanted and not _terminating(obj):
            result.delete_jobs.append(name)

    rerun = observed.annotations.get(constants.ANNOTATION_RERUN)
    if rerun is not None:
        result.rerun = rerun

    busy: set[str] = set()
    for run in desired:
        evalrun: Mapping[str, Any] | None = runs.get(run.name)
        job: Mapping[str, Any] | None = jobs.get(run.name)
        followed = _follow(run, evalrun, job, pods, observed, start_timeout, template)
        view = followed.view
        if followed.write is not None:
            result.record[run.name] = followed.write
        if followed.delete_job:
            result.delete_jobs.append(run.name)
        if followed.suspend is not None:
            (result.suspend if followed.suspend else result.unsuspend).append(run.name)
        if view.exists and _reruns(rerun, view.record):
            result.delete_runs.append(run.name)
            if job is not None and not _terminating(job):
                result.delete_jobs.append(run.name)
            view = RunView(run, Record(message="rerun requested"), exists=False)
            busy.add(run.model.name)
        elif evalrun is None and job is None and run.waiting:
            # No EvalRun yet: one is created with the task resolved once the config exists.
            view = RunView(run, Record(message=f"waiting: {run.waiting}"), exists=False)
        elif evalrun is None and job is None and run.key in reusable:
            view = RunView(run, _reused(run, reusable[run.key]), exists=True)
            result.create_runs.append(run)
            result.record[run.name] = view.record
        elif evalrun is None and job is None:
            result.create_runs.append(run)
            view.exists = True
        if _busy(view, job):
            busy.add(run.model.name)
        if job_ttl and _expires(view, evalrun, job):
            result.expire_jobs.append(run.name)
        result.views.append(view)
    deleted = set(result.delete_jobs)
    result.expire_jobs = [n for n in result.expire_jobs if n not in deleted]

    if result.deletes or evalspec.suspend or rerun is not None:
        result.create_runs = []
        return result
    _plan_job_creates(evalspec, result, busy, jobs, blocked)
    _cap_run_creates(result, runs)
    return result


def _reruns(rerun: str | None, record: Record) -> bool:
    if rerun == constants.RERUN_ALL:
        return True
    return rerun == constants.RERUN_FAILED and record.state == RunState.FAILED


def _expires(
    view: RunView, evalrun: Mapping[str, Any] | None, job: Mapping[str, Any] | None
) -> bool:
    """Whether the run's Job is to get its TTL: the run's result is final (recorded before
    the TTL is set: reconcile writes records first, and sets it only on a record that is
    final once they are written), the Job is this run's (its EvalRun owns it), and it has
    none yet. The TTL controller then deletes the Job and its pods: evidence only, which
    nothing reads once the record is final."""
    if evalrun is None or job is None or not view.record.final:
        return False
    if _terminating(evalrun) or _terminating(job):
        return False
    if records.owner_uid(job, constants.EVALRUN.kind) != str(evalrun["metadata"].get("uid", "")):
        return False  # a leftover, or someone else's Job of that name
    return "ttlSecondsAfterFinished" not in (job.get("spec") or {})


def _busy(view: RunView, job: Mapping[str, Any] | None) -> bool:
    if job is not None and (_terminating(job) or not jobstate.is_finished(job)):
        return not view.record.final or _terminating(job)
    return False


@dataclass
class Followed:
    """What following one run found: its view, and what it asks of the pass."""

    view: RunView
    write: Record | None = None  # its record, where it changed
    delete_job: bool = False
    suspend: bool | None = None  # its Job to be suspended (True) or resumed (False)


def _follow(
    run: DesiredRun,
    evalrun: Mapping[str, Any] | None,
    job: Mapping[str, Any] | None,
    pods: Mapping[str, Sequence[Mapping[str, Any]]],
    observed: Observed,
    start_timeout: float,
    template: str,
) -> Followed:
    """One run's record, from its EvalRun and (while unfinished) its Job."""
    waiting_for_old_job = Record(message="waiting for its previous Job to be deleted")
    if evalrun is None or _terminating(evalrun):
        if job is not None:
            # A Job without a live EvalRun is left from a deleted one: it goes first.
            view = RunView(run, waiting_for_old_job, exists=False)
            return Followed(view, delete_job=not _terminating(job))
        message = "waiting for its previous record to be deleted" if evalrun is not None else ""
        return Followed(RunView(run, Record(message=message), exists=False))

    old = records.from_status(evalrun.get("status"))
    if old.final:
        rescored = old.with_score(run.task) if old.state != RunState.FAILED else old
        # A changed primaryMetric rescores the record: nothing reruns.
        return Followed(RunView(run, rescored, exists=True), _changed(old, rescored))

    uid = str(evalrun["metadata"].get("uid", ""))
    if job is not None and (records.owner_uid(job, constants.EVALRUN.kind) != uid):
        new = replace(old, state=RunState.PENDING, message=waiting_for_old_job.message)
        return _recorded(run, old, new, delete_job=not _terminating(job))
    if job is not None and _terminating(job):
        return _recorded(run, old, replace(old, message=waiting_for_old_job.message))
    if job is None:
        if old.job:
            new = replace(
                old,
                state=RunState.FAILED,
                completion_time=status_mod.timestamp(observed.now),
                message=f"its Job {old.job} was deleted before the run finished; rerun it "
                f"with the annotation {constants.ANNOTATION_RERUN}=failed",
            )
            return _recorded(run, old, new)
        return Followed(RunView(run, old, exists=True))

    outcome = jobstate.describe(
        job,
        pods.get(str(job["metadata"].get("uid", "")), []),
        observed.now,
        start_timeout,
        observed.create_failures.get(run.name, ""),
        observed.task_logs,
    )
    new = Record(
        state=outcome.state,
        job=run.name,
        attempts=outcome.attempts,
        start_time=outcome.start_time or old.start_time,
        completion_time=outcome.completion_time,
        metrics=outcome.metrics,
        message=outcome.message,
        progress=_progress(old, observed.progress.get(run.name))
        if outcome.state == RunState.RUNNING
        else None,
    )
    delete_job, suspend = False, None
    if new.final:
        new = replace(
            new, completion_time=new.completion_time or status_mod.timestamp(observed.now)
        )
        new = new.with_score(run.task)
        delete_job = outcome.start_failed  # stop its retries: the record is final
    elif not jobstate.is_finished(job):
        suspend = _suspension(observed, job)
        annotations = job["metadata"].get("annotations") or {}
        made_with = annotations.get(constants.ANNOTATION_TEMPLATE_HASH)
        stale = made_with is not None and made_with != template
        if stale and not outcome.started:
            delete_job = True
            new = replace(new, job="", message="replacing its Job: spec.template changed")
    followed = _recorded(run, old, new, delete_job=delete_job, suspend=suspend)
    followed.view.waiting_for_model = outcome.probing_for
    followed.view.recheck_after = outcome.recheck_after
    return followed


def _changed(old: Record, new: Record) -> Record | None:
    return new if new != old else None


def _recorded(
    run: DesiredRun,
    old: Record,
    new: Record,
    delete_job: bool = False,
    suspend: bool | None = None,
) -> Followed:
    return Followed(RunView(run, new, exists=True), _changed(old, new), delete_job, suspend)


def _reused(run: DesiredRun, source: Mapping[str, Any]) -> Record:
    found = records.from_status(source.get("status"))
    meta = source["metadata"]
    return Record(
        state=RunState.REUSED,
        start_time=found.start_time,
        completion_time=found.completion_time,
        metrics=found.metrics,
        reused_from=f"{meta['namespace']}/{meta['name']}",
    ).with_score(run.task)


def _progress(old: Record, read: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The progress a running run shows: what its log told just now, unless that is what
    it shows already (then with its time, so that an unchanged count writes nothing)."""
    if read is None:
        return old.progress
    if old.progress and (old.progress.get("done"), old.progress.get("total")) == (
        read["done"],
        read["total"],
    ):
        return old.progress
    return read


def _suspension(observed: Observed, job: Mapping[str, Any]) -> bool | None:
    """Suspend our running Jobs for spec.suspend (True); resume only the ones we suspended
    (False); None: leave the Job as it is."""
    wants = bool((observed.evaltask.get("spec") or {}).get("suspend"))
    suspended = bool(job.get("spec", {}).get("suspend"))
    ours = (job["metadata"].get("annotations") or {}).get(
        constants.ANNOTATION_SUSPENDED_BY_OPERATOR
    ) == "true"
    if wants and not suspended:
        return True
    if not wants and suspended and ours:
        return False
    return None


def _plan_job_creates(
    evalspec: spec.EvalTaskSpec,
    result: Plan,
    busy: set[str],
    jobs: Mapping[str, Mapping[str, Any]],
    blocked: str,
) -> None:
    limit = evalspec.parallelism or len(evalspec.models)
    active = len(busy)
    order = list(evalspec.models)
    if limit >= len(order):
        # Every chain may run: those furthest behind go first, or with more free chains
        # than the Jobs a pass creates the first models take every slot and the last wait.
        # (Under a parallelism limit, chains go in the spec's order, each to its end.)
        done = Counter(v.run.model.name for v in result.views if v.record.final)
        order.sort(key=lambda m: done[m.name])
    for model in order:
        if active >= limit or len(result.create_jobs) >= MAX_JOB_CREATES_PER_PASS:
            return
        if model.name in busy:
            continue
        chain = [v for v in result.views if v.run.model.name == model.name]
        view = next((v for v in chain if not v.record.final), None)
        if view is None or view.run.name in jobs or view.run.waiting:
            continue
        if blocked:
            new = replace(view.record, message=blocked)
            if new != view.record or view.run in result.create_runs:
                result.record[view.run.name] = new
            view.record = new
            continue
        result.create_jobs.append(view.run)
        active += 1


def _cap_run_creates(result: Plan, existing: Mapping[str, Any]) -> None:
    """The EvalRuns whose Jobs start now come first; the rest follow in later passes.

    A pass that starts a chain (its model has no EvalRun yet) makes only those: with many
    EvalTasks applied at once, every chain's first Job comes before the EvalRuns of the
    runs that wait behind it. The next pass, which the new Jobs' events bring, makes them.
    """
    # By name: comparing the runs' pydantic models field by field cost 77 ms per pass
    # at 1,024 runs.
    jobs = {r.name for r in result.create_jobs}
    starting = [r for r in result.create_runs if r.name in jobs]
    started = {v.run.model.name for v in result.views if v.run.name in existing}
    if any(r.model.name not in started for r in result.create_jobs):
        kept = starting
    else:
        rest = [r for r in result.create_runs if r.name not in jobs]
        kept = (starting + rest)[: max(MAX_RUN_CREATES_PER_PASS, len(starting))]
    # A record planned for an EvalRun made later (a reused result) is written with it.
    made = {r.name for r in kept}
    for run in result.create_runs:
        if run.name not in made:
            result.record.pop(run.name, None)
    result.create_runs = kept
