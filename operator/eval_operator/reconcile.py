"""One reconcile pass for one EvalTask: observe, decide, act, then write its status.

Every kopf event calls this same function; it never depends on which event fired. It
reads the EvalTask, its EvalRuns, Jobs and pods from the API server, or is given them as
the watches show them (cache.py), so a restarted operator picks up exactly where the API
says things are. All I/O goes through `kube.Api`.

- observe (`look`): every read the pass decides on; a spec only an edit can fix ends the
  pass here, said on the EvalTask.
- decide (`decide`, pure): the plan (plan.py) and its writes as typed steps (steps.py).
- act (executor.py): the steps, stage by stage; what the API server answers lands in the
  runs' records, from which the status is summarized (status.py) and written.

Order within a pass: records first (an EvalRun's status is the result's only copy once
its pod may go), then deletions, then creations, then the EvalTask's status, and only
then the events that announce what was recorded (persist, then announce). A rerun
request is removed only once the deletions it asked for are made.

A refusal no retry can fix (a 400, 403, 413, 422 on a record or on the status) does not
stop the pass: the run or the EvalTask says so (RecordsWritten) and the rest goes on.
Anything else that stops a pass is the caller's to retry (handlers.py), and
`report_failure` says it on the EvalTask.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, Final

from eval_operator import (
    cache,
    checks,
    conditions,
    constants,
    executor,
    jobstate,
    kube,
    manifests,
    metrics,
    naming,
    parallel,
    plan,
    progress,
    records,
    redaction,
    spec,
    statustypes,
    steps,
    taskconfigs,
)
from eval_operator import status as status_mod
from eval_operator.statustypes import Phase, RunState

log = logging.getLogger(__name__)

_STATUS_KEYS: Final = tuple(
    f.alias or name for name, f in statustypes.EvalTaskStatus.model_fields.items()
)
_REUSE_CHUNK: Final = 40


@dataclass(frozen=True)
class Config:
    runner_image: str = constants.DEFAULT_RUNNER_IMAGE
    default_timeout: int = constants.DEFAULT_TIMEOUT_SECONDS
    start_timeout: float = constants.DEFAULT_START_TIMEOUT_SECONDS
    # Seconds a finished Job stays once its run's result is recorded; 0: until its
    # EvalTask goes (the Jobs are its dependents).
    job_ttl: int = constants.DEFAULT_JOB_TTL_SECONDS
    # Reads running runs' logs for their progress, at a bounded rate; None: never.
    progress: progress.Poller | None = None
    # A Job with no pod this long after its creation: ask why (FailedCreate events).
    create_failure_after: float = 2.0
    # How often to look again while runs are unfinished (sooner when a run asks for it: a
    # timeout or the probe's grace period ends), so nothing waits for an event that never
    # comes; and never sooner than requeue_min.
    requeue_active: float = 60.0
    requeue_min: float = 1.0
    # A wait for the cluster (a missing Secret, a refused Job) is checked again after
    # wait_recheck_first, then twice as long each time, up to wait_recheck_max.
    wait_recheck_first: float = 2.0
    wait_recheck_max: float = 60.0

    def wait_backoff(self, waited: float) -> float:
        """Seconds to the next check of a wait that has lasted `waited` seconds: by default
        2, then doubling (checks at 2, 6, 14, 30, 62 s), at most 60 apart.

        Derived from the wait's start (ReadyToStart's lastTransitionTime), not counted per
        pass: passes that other events bring do not speed it up, and a restarted operator
        takes it up where it was.
        """
        return min(self.wait_recheck_max, max(0.0, waited) + self.wait_recheck_first)


@dataclass
class Outcome:
    """What one pass did, for metrics and logs."""

    phase: str = ""
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_written: bool = False
    invalid: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    # (model, task, record) of every run, for the metrics.
    runs: list[tuple[str, str, records.Record]] = field(default_factory=list)
    # (task, seconds) of the runs that finished in this pass, for the duration histogram.
    finished: list[tuple[str, float]] = field(default_factory=list)
    # Seconds until this EvalTask needs another pass although nothing changes; None: never.
    requeue_after: float | None = None
    # Whether that pass reads the API server (a timeout is due), or may use the watches'
    # copy (only a progress read is due).
    requeue_fresh: bool = True


@dataclass
class _Announce:
    """Events to post once the status that records them is written."""

    events: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def observe(api: kube.Api, namespace: str, name: str) -> cache.Snapshot | None:
    """The EvalTask and all of its, read from the API server. None when it is gone."""
    try:
        body = api.get_evaltask(namespace, name)
    except kube.NotFound:
        return None
    selector = naming.selector(body["metadata"]["uid"])
    return cache.Snapshot(
        evaltask=body,
        runs=api.list_evalruns(namespace, selector),
        jobs=api.list_jobs(namespace, selector),
        pods=api.list_pods(namespace, selector),
    )


def behind(snapshot: cache.Snapshot) -> bool:
    """Whether the watches may not show yet what a finished Job's result needs.

    The watches of Jobs and of pods are separate streams, and the pods' (busier) may lag:
    a Job shown finished with no pod of it shown ended is read afresh before its run's
    outcome, which is final, is recorded. A run recorded already needs nothing more.
    """
    final = {
        str(r["metadata"]["name"])
        for r in snapshot.runs
        if records.from_status(r.get("status")).final
    }
    pods = jobstate.pods_by_job(snapshot.pods)
    for job in snapshot.jobs:
        meta = job["metadata"]
        if meta.get("name") in final or not jobstate.is_finished(job):
            continue
        mine = pods.get(str(meta.get("uid")), [])
        if not any(p.get("status", {}).get("phase") in ("Succeeded", "Failed") for p in mine):
            return True
    return False


@dataclass(frozen=True)
class Looked:
    """What a pass reads before it decides: the EvalTask and all of its, as observed, and
    what the cluster says of its spec."""

    observed: plan.Observed
    owner: records.Owner
    evalspec: spec.EvalTaskSpec  # the configRef entries as resolved
    desired: list[plan.DesiredRun]
    # What the cluster must change before the runs still to start can (None: nothing).
    wait: status_mod.Wait | None
    secrets: list[str]  # every secret value known to this EvalTask: redacted from writes
    literal: dict[str, str]  # the models' literal auth values, by model name
    reusable: dict[plan.RunKey, Mapping[str, Any]]


@dataclass(frozen=True)
class Decision:
    """What a pass does: the plan, and its writes as stages (steps.py)."""

    the_plan: plan.Plan
    stages: list[steps.Stage]
    # Seconds the cluster has refused this EvalTask's Jobs (their dry-run or a create).
    refused_for: float
    events: list[executor.Event]  # said whatever the writes do


def reconcile(
    api: kube.Api,
    namespace: str,
    name: str,
    now: datetime,
    config: Config,
    snapshot: cache.Snapshot | None = None,
    writers: Executor | None = None,
) -> Outcome | None:
    """Bring one EvalTask one step closer to its spec. None when it no longer exists.

    `snapshot`: what the watches show (handlers.py); without it the pass reads the API.
    `writers`: threads that make a step's independent writes at once (one at a time
    without): at 1,024 runs a pass made 180 writes, one after another.
    """
    if snapshot is not None and behind(snapshot):
        # Only the pods' watch lags: the API server's pods, the rest as the watches show.
        uid = str(snapshot.evaltask["metadata"]["uid"])
        snapshot = replace(snapshot, pods=api.list_pods(namespace, naming.selector(uid)))
    seen = snapshot or observe(api, namespace, name)
    if seen is None:
        return None
    if seen.evaltask["metadata"].get("deletionTimestamp"):
        return None  # owner references delete the EvalRuns, Jobs and pods
    observed = plan.Observed(
        evaltask=seen.evaltask,
        runs=seen.runs,
        jobs=seen.jobs,
        pods=seen.pods,
        now=now,
        create_failures=_create_failures(
            api, namespace, seen.jobs, seen.pods, now, config.create_failure_after
        ),
    )
    # The pods whose task runs: their logs are read now or at the pass the requeue asks for.
    running = _running_tasks(observed) if config.progress is not None else []
    observed = replace(observed, progress=_read_progress(api, observed, config.progress, running))
    try:
        looked = look(api, observed, config, writers)
    except spec.SpecInvalid as e:
        return _report_invalid(api, observed, e.problems)
    decision = decide(looked, config)
    acted = executor.StepExecutor(
        api,
        looked.owner,
        looked.evalspec,
        decision.the_plan,
        looked.observed,
        looked.secrets,
        config,
        decision.refused_for,
    ).run(decision.stages, writers)
    return _report(api, looked, decision, acted, config, running, writers)


def look(
    api: kube.Api, observed: plan.Observed, config: Config, pool: Executor | None = None
) -> Looked:
    """The reads a pass decides on: the spec with its configs, its references and the
    dry-run (while runs are still to start), the failed tasks' logs, reusable results.

    Raises SpecInvalid for what only an edit fixes.
    """
    namespace, name, uid = observed.namespace, observed.name, observed.uid
    owner = records.Owner(constants.EVALTASK.kind, name, namespace, uid)
    secrets: list[str] = []  # values read from the Secrets the runs use: redacted
    written = spec.parse_spec(observed.evaltask.get("spec"))
    # Fingerprints hash the whole spec per run: computed once per pass.
    desired = plan.desired_runs(written, name, _config_lookup(api, namespace), observed.runs)
    # The configRef entries as resolved: what the checks and the leaderboard read.
    evalspec = plan.resolved_spec(written, desired)
    wait = _config_wait(written, desired)
    if wait is None and plan.unfinished(desired, observed):
        # References and the dry-run guard only runs still to start: a finished
        # EvalTask stays finished when a Secret it used is deleted later.
        versions = {
            (r.source.kind, r.source.name, r.source.resource_version)
            for r in desired
            if r.source is not None
        }
        wait, secrets = _check_cluster(api, owner, evalspec, config, observed, pool, versions)
    literal = manifests.literal_auth_values(evalspec)
    # And the values its Secrets had before: a run recorded after a rotation may have
    # printed the old one.
    secrets = redaction.MEMORY.remember(uid, [*secrets, *literal.values()])
    observed = replace(observed, task_logs=_failed_task_logs(api, observed, secrets))
    reusable = _reusable(api, namespace, uid, desired, observed) if evalspec.reuse else {}
    return Looked(observed, owner, evalspec, desired, wait, secrets, literal, reusable)


def decide(looked: Looked, config: Config) -> Decision:
    """What the pass is to do, from what it read (pure)."""
    observed, wait = looked.observed, looked.wait
    refused_for = _waited(observed, conditions.JOB_REFUSED)
    # Past the start timeout a refused dry-run blocks nothing: the creates are made, and
    # the runs whose Job is refused fail with the server's words (one refused as a
    # dry-run only, by a webhook without dry-run support, say, starts).
    blocked = ""
    if wait is not None and not (
        wait.reason == conditions.JOB_REFUSED and refused_for >= config.start_timeout
    ):
        blocked = "waiting: " + wait.message
    if wait is not None and wait.reason == conditions.CONFIG_NOT_FOUND:
        blocked = ""  # only the runs of the missing config wait (plan.DesiredRun.waiting)
    events: list[executor.Event] = []
    rerun = observed.annotations.get(constants.ANNOTATION_RERUN)
    if rerun is not None and rerun not in (constants.RERUN_FAILED, constants.RERUN_ALL):
        events.append(
            (
                "Warning",
                conditions.UNKNOWN_RERUN,
                f"{constants.ANNOTATION_RERUN}={rerun[:100]!r} is not "
                f"{constants.RERUN_FAILED!r} or {constants.RERUN_ALL!r}; nothing was rerun",
            )
        )
    the_plan = plan.plan(
        looked.evalspec,
        observed,
        looked.reusable,
        blocked,
        config.start_timeout,
        looked.desired,
        config.job_ttl,
    )
    # The rerun request goes only after its deletions (removed before them, a crash or an
    # API error in between lost it). Until it is gone nothing is created (plan.py), so a
    # pass that sees it again finds no run that reran for it.
    stages = steps.steps_of(the_plan, looked.literal, rerun is not None)
    return Decision(the_plan, stages, refused_for, events)


def _report(
    api: kube.Api,
    looked: Looked,
    decision: Decision,
    acted: executor.Acted,
    config: Config,
    running: list[tuple[str, tuple[str, str]]],
    writers: Executor | None,
) -> Outcome:
    """The EvalTask's status from the runs' records as the writes left them, then the
    events that announce what was recorded (persist, then announce)."""
    observed, secrets, the_plan = looked.observed, looked.secrets, decision.the_plan
    announce = _Announce([*decision.events, *acted.events])
    new_status = status_mod.summarize(
        looked.evalspec,
        the_plan.views,
        observed.previous_status,
        observed.generation,
        observed.now,
        acted.refused,
        looked.wait,
    )
    new_status = redact(new_status, secrets)
    _announce_refusal(observed.previous_status, new_status, announce)
    _announce_wait(observed, new_status, announce)
    _announce_spec(observed, looked.literal, announce)
    outcome = Outcome(
        phase=new_status["phase"],
        created=acted.created,
        deleted=acted.deleted,
        status=new_status,
        runs=[(v.run.model.name, v.run.task.name, v.record) for v in the_plan.views],
        finished=acted.finished,
    )
    outcome.requeue_after = _requeue_after(
        the_plan, config, _recheck_after(new_status, observed.now, config)
    )
    read = _next_progress_read(config, running)
    if read is not None and (outcome.requeue_after is None or read < outcome.requeue_after):
        # A pass only to read logs: what the watches show is enough for it.
        outcome.requeue_after, outcome.requeue_fresh = read, False
    outcome.status_written = _write_status(api, observed, new_status, announce)
    parallel.each(
        writers,
        [
            partial(_event, api, observed.evaltask, type_, reason, redact(message, secrets))
            for type_, reason, message in announce.events
        ],
    )
    return outcome


def _announce_refusal(
    previous: Mapping[str, Any], new: Mapping[str, Any], announce: _Announce
) -> None:
    """A Warning event when RecordsWritten turns False or says something new: once per
    refusal, not once per pass."""
    cond = conditions.get(new.get("conditions") or [], conditions.RECORDS_WRITTEN)
    if cond is None or cond.get("status") != "False":
        return
    old = conditions.get(previous.get("conditions") or [], conditions.RECORDS_WRITTEN)
    said = (cond.get("status"), cond.get("reason"), cond.get("message"))
    if old is None or (old.get("status"), old.get("reason"), old.get("message")) != said:
        announce.add("Warning", str(cond["reason"]), str(cond["message"]))


def _config_lookup(api: kube.Api, namespace: str) -> taskconfigs.Lookup:
    """Reads a configRef's config from the API server (once per pass and config)."""

    def lookup(ref: spec.ConfigRef) -> taskconfigs.Found | None:
        try:
            return taskconfigs.from_body(api.get_task_config(ref.kind, namespace, ref.name))
        except kube.NotFound:
            return None

    return lookup


def _config_wait(
    evalspec: spec.EvalTaskSpec, desired: list[plan.DesiredRun]
) -> status_mod.Wait | None:
    """The wait for configRef configs that do not exist (or are no valid task): their
    runs are created once the config is (the operator watches both kinds)."""
    missing = plan.waiting(desired)
    if not missing:
        return None
    index = {t.name: i for i, t in enumerate(evalspec.tasks)}
    said = "; ".join(f"spec.tasks[{index[r.task.name]}].configRef: {r.waiting}" for r in missing)
    return status_mod.Wait(
        conditions.CONFIG_NOT_FOUND,
        f"{said}; the runs of the task wait until it exists",
        checked=False,
    )


def _check_cluster(
    api: kube.Api,
    owner: records.Owner,
    evalspec: spec.EvalTaskSpec,
    config: Config,
    observed: plan.Observed,
    pool: Executor | None,
    versions: set[checks.ConfigVersion],
) -> tuple[status_mod.Wait | None, list[str]]:
    """What the cluster must change before the runs still to start can: a referenced
    Secret or ConfigMap to be created, admission to accept their Jobs (None: nothing);
    and the values of the Secrets the runs read.

    Raises SpecInvalid for what only an edit fixes: the API server finds the Jobs invalid
    or too large (or, of a task with a configRef, a fix of its config). The dry-run is made
    whether or not the references exist (it never reads them), so the spec's verdict does
    not wait for a Secret. `versions`: the configs the spec's tasks were resolved from.
    """
    missing, secrets = checks.check_references(api, owner.namespace, evalspec)
    problems = _kept_verdict(observed, versions)
    if problems is None:  # once per generation and set of config versions
        image, timeout = config.runner_image, config.default_timeout
        problems = checks.dry_run(api, owner, evalspec, image, timeout, pool)
        checks.DRY_RUNS.note(observed.uid, observed.generation, versions)
    invalid = [p for p in problems if p.reason != conditions.JOB_REFUSED]
    if invalid:
        raise spec.SpecInvalid(invalid)
    if missing:
        # No bound: API.md has such runs wait until the object exists (again).
        wait = status_mod.Wait(
            missing[0].reason,
            "; ".join(str(p) for p in missing) + "; the runs still to start wait until it exists",
            checked=not problems,
        )
        return wait, secrets
    if problems:
        wait = status_mod.Wait(
            conditions.JOB_REFUSED,
            "; ".join(str(p) for p in problems) + "; the runs still to start wait, tried "
            f"again with backoff, for at most the start timeout of {config.start_timeout:g}s",
            checked=False,
        )
        return wait, secrets
    return None, secrets


def _waited(observed: plan.Observed, reason: str) -> float:
    """Seconds the wait for `reason` has lasted (ReadyToStart's time); 0 when none is on."""
    since = status_mod.waiting_since(observed.previous_status, reason)
    return max(0.0, (observed.now - status_mod.parse_time(since)).total_seconds()) if since else 0.0


def _announce_wait(observed: plan.Observed, new: Mapping[str, Any], announce: _Announce) -> None:
    """A Warning event, and a line in the log, when the runs start to wait for the
    cluster, or for something else: once per wait, not once per pass (its words may
    change as a quota's usage does)."""
    cond = conditions.get(new.get("conditions") or [], conditions.READY_TO_START)
    if cond is None or cond.get("status") != "False":
        return
    previous = observed.previous_status
    old = conditions.get(previous.get("conditions") or [], conditions.READY_TO_START)
    if old is None or (old.get("status"), old.get("reason")) != ("False", cond.get("reason")):
        where = f"{observed.namespace}/{observed.name}"
        log.warning("%s: runs wait (%s): %s", where, cond["reason"], cond["message"])
        announce.add("Warning", str(cond["reason"]), str(cond["message"]))


def _create_failures(
    api: kube.Api,
    namespace: str,
    jobs: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    now: datetime,
    after: float,
) -> dict[str, str]:
    """Job name -> why the Job controller cannot create its pod, for Jobs that have had
    none for `after` seconds since their creation."""
    with_pods = set(jobstate.pods_by_job(list(pods)))
    found: dict[str, str] = {}
    for job in jobs:
        meta = job["metadata"]
        if meta.get("deletionTimestamp") or jobstate.is_finished(job):
            continue
        if str(meta.get("uid")) in with_pods or job.get("spec", {}).get("suspend"):
            continue
        counts = job.get("status") or {}
        if any(counts.get(k) for k in ("active", "succeeded", "failed", "terminating")):
            continue  # the Job controller made its pod: the pods' watch has not shown it yet
        created = meta.get("creationTimestamp")
        age = (now - status_mod.parse_time(created)).total_seconds() if created else 0.0
        if age < after:
            continue
        try:
            messages = api.create_failures(namespace, str(meta.get("uid")))
        except kube.ApiError as e:
            # Only the reason is lost: the run still waits, then fails at its start timeout.
            log.warning("%s: cannot read why Job %s has no pod: %s", namespace, meta["name"], e)
            continue
        if messages:
            found[str(meta["name"])] = messages[-1]
    return found


def _kept_verdict(
    observed: plan.Observed, versions: set[checks.ConfigVersion]
) -> list[spec.SpecProblem] | None:
    """The server-side dry-run's verdict on this generation and these config versions, as
    SpecValid records it; None: there is none, the dry-run is to be made."""
    cond = conditions.get(observed.previous_status.get("conditions") or [], conditions.SPEC_VALID)
    if not checks.DRY_RUNS.current(observed.uid, observed.generation, versions):
        return None
    if cond and cond.get("observedGeneration") == observed.generation:
        if cond.get("status") == "True":
            return []
        if cond.get("reason") == conditions.JOB_REJECTED:
            return [spec.SpecProblem("", conditions.JOB_REJECTED, str(cond.get("message")))]
    return None


def _report_invalid(
    api: kube.Api, observed: plan.Observed, problems: list[spec.SpecProblem]
) -> Outcome:
    message = records.bounded("; ".join(str(p) for p in problems))
    reason = problems[0].reason
    previous = observed.previous_status
    new_status = status_mod.invalid(message, reason, previous, observed.generation, observed.now)
    old = conditions.get(previous.get("conditions") or [], conditions.SPEC_VALID)
    announce = _Announce()
    written = _write_status(api, observed, new_status, announce)
    if not old or old.get("status") != "False" or old.get("message") != message:
        log.warning("%s/%s: invalid spec: %s", observed.namespace, observed.name, message)
        _event(api, observed.evaltask, "Warning", reason, message)
    for type_, why, said in announce.events:
        _event(api, observed.evaltask, type_, why, said)
    return Outcome(phase=Phase.FAILED, status_written=written, invalid=True, status=new_status)


def _reusable(
    api: kube.Api,
    namespace: str,
    uid: str,
    desired: list[plan.DesiredRun],
    observed: plan.Observed,
) -> dict[plan.RunKey, Mapping[str, Any]]:
    """Succeeded EvalRuns of other EvalTasks, found by fingerprint label, for runs that have
    no record yet."""
    have = {str(r["metadata"]["name"]) for r in observed.runs}
    needed = {r.key for r in desired if r.name not in have and not r.waiting}
    fingerprints = sorted({fp for _, _, fp in needed})
    found: dict[plan.RunKey, Mapping[str, Any]] = {}
    for i in range(0, len(fingerprints), _REUSE_CHUNK):
        chunk = ",".join(fingerprints[i : i + _REUSE_CHUNK])
        candidates = api.list_evalruns(namespace, f"{constants.LABEL_FINGERPRINT} in ({chunk})")
        for other in sorted(candidates, key=lambda o: str(o["metadata"]["name"])):
            labels = other["metadata"].get("labels") or {}
            if labels.get(constants.LABEL_EVALTASK_UID) == uid:
                continue
            run_spec = other.get("spec") or {}
            key = (
                str(run_spec.get("model")),
                str(run_spec.get("task")),
                str(run_spec.get("fingerprint")),
            )
            state = (other.get("status") or {}).get("state")
            if key in needed and state == RunState.SUCCEEDED and key not in found:
                found[key] = other
    return found


def _announce_spec(
    observed: plan.Observed, literal: Mapping[str, str], announce: _Announce
) -> None:
    old_valid = conditions.get(
        observed.previous_status.get("conditions") or [], conditions.SPEC_VALID
    )
    new_generation = not old_valid or old_valid.get("observedGeneration") != observed.generation
    if literal and new_generation:
        announce.add(
            "Warning",
            conditions.LITERAL_AUTH_VALUE,
            "models " + ", ".join(sorted(literal)) + " give auth.value inline; it was moved "
            "into a Secret owned by this EvalTask, but use auth.secretRef instead",
        )


def _requeue_after(
    the_plan: plan.Plan, config: Config, recheck: float | None = None
) -> float | None:
    """`recheck`: when a wait for the cluster is to be checked again (_recheck_after)."""
    unfinished = [v for v in the_plan.views if not v.record.final]
    if not unfinished:
        return None  # a finished EvalTask costs nothing until something changes
    asked = [v.recheck_after for v in unfinished if v.recheck_after is not None]
    if recheck is not None:
        asked.append(recheck)
    return max(config.requeue_min, min([config.requeue_active, *asked]))


def _recheck_after(new_status: Mapping[str, Any], now: datetime, config: Config) -> float | None:
    """Seconds until the runs' wait for the cluster (nothing watches Secrets, ConfigMaps
    or quotas) is checked again; None: nothing waits."""
    cond = conditions.get(new_status.get("conditions") or [], conditions.READY_TO_START)
    if cond is None or cond.get("status") != "False":
        return None
    waited = (now - status_mod.parse_time(str(cond["lastTransitionTime"]))).total_seconds()
    delay = config.wait_backoff(waited)
    if cond.get("reason") == conditions.JOB_REFUSED and waited < config.start_timeout:
        delay = min(delay, config.start_timeout - waited)  # a refused run fails on time
    return delay


def _next_progress_read(config: Config, running: list[tuple[str, tuple[str, str]]]) -> float | None:
    """Seconds until a running task's log is due its next read; None: no task runs."""
    if config.progress is None:
        return None
    waits = [config.progress.wait(key) for key, _ in running]
    return max(config.requeue_min, min(waits)) if waits else None


def _failed_task_logs(
    api: kube.Api, observed: plan.Observed, secrets: Iterable[str]
) -> dict[str, str]:
    """Pod name -> the end of its task's log, redacted, for the newest pod of each
    unrecorded run whose task failed: the run's message quotes it. Read from pods/log,
    not the pod's termination message, so the pod object never holds what the task
    printed (a token it echoed, say); redacted before it is cut again."""
    final = {
        str(r["metadata"]["name"])
        for r in observed.runs
        if records.from_status(r.get("status")).final
    }
    jobs = _job_names(observed)
    out: dict[str, str] = {}
    for uid, pods in jobstate.pods_by_job(observed.pods).items():
        if uid not in jobs or jobs[uid] in final:
            continue
        failed = [p for p in pods if jobstate.task_failed(p)]
        if not failed:
            continue
        pod = str(failed[-1]["metadata"]["name"])
        try:
            text = api.read_pod_log(
                observed.namespace,
                pod,
                constants.TASK_CONTAINER,
                jobstate.LOG_TAIL_LINES,
                jobstate.LOG_TAIL_BYTES,
            )
        except kube.ApiError as e:
            # The message then gives the exit code alone (the pod may be gone).
            log.debug("%s/%s: no log tail: %s", observed.namespace, pod, e)
            continue
        out[pod] = redaction.redact(text, secrets, cut=True)
    return out


def _job_names(observed: plan.Observed) -> dict[str, str]:
    """Job uid -> name, as pods name their Job (jobstate.pods_by_job)."""
    return {str(j["metadata"].get("uid", "")): str(j["metadata"]["name"]) for j in observed.jobs}


def _running_tasks(observed: plan.Observed) -> list[tuple[str, tuple[str, str]]]:
    """(poller key, (Job name, pod name)) of each pod whose task container runs."""
    jobs = _job_names(observed)
    out = []
    for uid, pods in jobstate.pods_by_job(observed.pods).items():
        if uid not in jobs:
            continue
        for pod in pods:
            if jobstate.task_running(pod):
                pod_name = str(pod["metadata"]["name"])
                out.append((f"{observed.uid}/{pod_name}", (jobs[uid], pod_name)))
    return out


def _read_progress(
    api: kube.Api,
    observed: plan.Observed,
    poller: progress.Poller | None,
    running: list[tuple[str, tuple[str, str]]],
) -> dict[str, dict[str, Any]]:
    """Job name -> the progress its running task's log tells, for the runs whose log is
    due a read (the poller allows one per run per interval); the others keep theirs."""
    if poller is None:
        return {}
    poller.forget({key for key, _ in running}, prefix=f"{observed.uid}/")
    out: dict[str, dict[str, Any]] = {}
    for key, (job, pod) in running:
        if not poller.take(key):
            continue
        try:
            text = api.read_pod_log(
                observed.namespace,
                pod,
                constants.TASK_CONTAINER,
                progress.TAIL_LINES,
                progress.LIMIT_BYTES,
            )
        except kube.ApiError as e:
            # Not fatal: the log may be gone with its pod (404), or not readable yet (400).
            # Anything else (a 403: the operator may not get pods/log) is for the admin to
            # fix: said where they look.
            level = logging.DEBUG if e.status in (400, 404) else logging.WARNING
            log.log(level, "%s/%s: no progress from its log: %s", observed.namespace, pod, e)
            continue
        finally:
            metrics.PROGRESS_READS_TOTAL.inc()
        found = progress.parse(text)
        if found is not None:
            out[job] = {
                "done": found.done,
                "total": found.total,
                "updateTime": status_mod.timestamp(observed.now),
            }
    return out


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every known secret value in the strings of a status or message."""
    return redaction.redact(value, secrets)


def _event(
    api: kube.Api, evaltask: Mapping[str, Any], type_: str, reason: str, message: str
) -> None:
    # An event is a courtesy: failing to post one must not fail the pass.
    try:
        api.post_event(evaltask, type_, reason, message)
    except kube.ApiError as e:
        log.info("could not post event %s: %s", reason, e)


def _write_status(
    api: kube.Api,
    observed: plan.Observed,
    new_status: Mapping[str, Any],
    announce: _Announce | None = None,
) -> bool:
    """Patch status only when it differs; keys we no longer set are removed.

    A status the API server refuses for good (too large, invalid) is replaced by a small
    one that says so (status.refused_status), and that, if refused too, by its condition alone:
    retrying the same status would be refused every pass and say nothing on the object.
    """
    try:
        return _patch_status(api, observed, new_status)
    except kube.Refused as e:
        log.warning("%s/%s: the status was refused: %s", observed.namespace, observed.name, e)
        words = records.bounded(e.message, 500)
    previous, generation = observed.previous_status, observed.generation
    small = status_mod.refused_status(new_status, previous, words, generation, observed.now)
    try:
        written = _patch_status(api, observed, small)
    except kube.Refused as e:
        log.warning("%s/%s: the small status was refused: %s", observed.namespace, observed.name, e)
        small = status_mod.refused_status(
            new_status, previous, "", generation, observed.now, bare=True
        )
        # Raised when refused too: nothing can be said on the object; the caller retries.
        written = _patch_status(api, observed, small, clear=False)
    if announce is not None:
        _announce_refusal(previous, small, announce)
    return written


def _patch_status(
    api: kube.Api, observed: plan.Observed, new_status: Mapping[str, Any], clear: bool = True
) -> bool:
    """`clear`: remove the keys `new_status` does not set."""
    previous = observed.previous_status
    patch: dict[str, Any] = {k: v for k, v in new_status.items() if previous.get(k) != v}
    if clear:
        patch.update({k: None for k in _STATUS_KEYS if k in previous and k not in new_status})
    if not patch:
        return False
    api.patch_evaltask_status(observed.namespace, observed.name, patch)
    return True


def report_failure(
    api: kube.Api, namespace: str, name: str, now: datetime, error: BaseException
) -> None:
    """Say on the EvalTask that a pass failed on it, once per cause: Progressing=False
    (ReconcileFailed) and a Warning event. For what no retry fixes by itself (a refusal
    of a write that is not a record's, an error of the operator's own); the next pass
    that gets through sets Progressing again.

    Best effort: whatever cannot be written is in the operator's log already.
    """
    if isinstance(error, kube.ApiError):
        cause = f"the API server refused a request: {records.bounded(error.message, 500)}"
    else:
        # Only the type: an exception's text may quote what it was given (a log, a spec).
        cause = f"the operator failed with {type(error).__name__} (see its log)"
    try:
        body = api.get_evaltask(namespace, name)
        if body["metadata"].get("deletionTimestamp"):
            return
        # A refusal may quote what it was sent (a webhook, a Secret's data).
        known = redaction.MEMORY.remember(str(body["metadata"].get("uid", "")), [])
        message = redaction.redact(f"{cause}; retrying with backoff", known)
        previous = (body.get("status") or {}).get("conditions") or []
        old = conditions.get(previous, conditions.PROGRESSING)
        said = ("False", conditions.RECONCILE_FAILED, message)
        if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == said:
            return
        generation = int(body["metadata"].get("generation", 0))
        conds = conditions.set_condition(
            previous,
            conditions.PROGRESSING,
            False,
            conditions.RECONCILE_FAILED,
            message,
            generation,
            status_mod.timestamp(now),
        )
        api.patch_evaltask_status(namespace, name, {"conditions": conds})
        _event(api, body, "Warning", conditions.RECONCILE_FAILED, message)
    except Exception as e:  # never fail the caller's retry
        log.warning("%s/%s: could not say on it that its pass failed: %s", namespace, name, e)
