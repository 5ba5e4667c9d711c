"""Runs a pass's steps (steps.py) against the API, stage by stage, and says what happened.

Each stage's steps are made at once on `writers` (one at a time without); a stage starts
when the one before it is done. What the API server answers changes the runs' records
as the pass sees them (RunView.record): a refused record fails its run, a name taken by
someone else makes its run wait, saying whose it is. The status written after the steps
is summarized from those records.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor as Threads
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, Protocol

from eval_operator import (
    checks,
    conditions,
    constants,
    jobstate,
    kube,
    manifests,
    parallel,
    plan,
    records,
    redaction,
    spec,
    steps,
)
from eval_operator import status as status_mod
from eval_operator.statustypes import RunState

log = logging.getLogger(__name__)
Written = tuple[str, records.Record] | None  # the run's name and the record now written
Event = tuple[str, str, str]  # type, reason, message


# Steps whose stage comes before the deletions of Jobs (steps.steps_of).
_BEFORE_JOB_DELETES: Final = (steps.EnsureAuthSecret, steps.WriteRecord, steps.DeleteEvalRun)


class Settings(Protocol):
    """What the steps need of the operator's settings (reconcile.Config)."""

    @property
    def runner_image(self) -> str: ...
    @property
    def default_timeout(self) -> int: ...
    @property
    def start_timeout(self) -> float: ...
    @property
    def job_ttl(self) -> int: ...


@dataclass
class Acted:
    """What the steps did."""

    # "model/task" -> why, for each run whose record the API server refused so that
    # nothing of it could be written (RecordsWritten says it).
    refused: dict[str, str] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # Jobs
    deleted: list[str] = field(default_factory=list)  # Jobs
    # To post once the status that records them is written, in the order they happened.
    events: list[Event] = field(default_factory=list)
    # (task, seconds) of the runs that finished in this pass.
    finished: list[tuple[str, float]] = field(default_factory=list)


class StepExecutor:
    """One pass's writes for one EvalTask."""

    def __init__(
        self,
        api: kube.Api,
        owner: records.Owner,
        evalspec: spec.EvalTaskSpec,
        the_plan: plan.Plan,
        observed: plan.Observed,
        secrets: list[str],
        settings: Settings,
        refused_for: float = 0.0,
    ) -> None:
        self.api, self.owner, self.evalspec = api, owner, evalspec
        self.the_plan, self.settings, self.secrets = the_plan, settings, secrets
        # Seconds the cluster has refused this EvalTask's Jobs already.
        self.refused_for = refused_for
        existing = {str(r["metadata"]["name"]): r for r in observed.runs}
        self.jobs = {str(j["metadata"]["name"]): j for j in observed.jobs}
        self.views = {v.run.name: v for v in the_plan.views}
        self.before = {n: records.from_status(r.get("status")) for n, r in existing.items()}
        self.uids = {n: str(r["metadata"].get("uid", "")) for n, r in existing.items()}
        self.stamp = status_mod.timestamp(observed.now)
        # Jobs of runs failed because their record was refused: nothing would record them.
        self.stop: list[str] = []  # their deletion joins the plan's (_delete_with_the_jobs)
        self.made: set[str] = set()
        self.deletes: set[str] = set()  # Jobs deleted by the DeleteJob steps
        self.acted = Acted()

    def run(self, stages: Iterable[steps.Stage], writers: Threads | None = None) -> Acted:
        pending = list(stages)
        while pending:
            stage = pending.pop(0)
            self.deletes.update(s.name for s in stage if isinstance(s, steps.DeleteJob))
            # In the stage's order, whichever write finished first: events stay in order.
            for written in parallel.each(writers, [partial(self.step, s) for s in stage]):
                if written is not None:
                    self._note(*written)
            if self.stop and any(isinstance(s, steps.WriteRecord) for s in stage):
                _delete_with_the_jobs(pending, self.stop, self.the_plan.delete_jobs)
                self.stop = []
        # Neither an event nor a record per Job created: the pass that sees the Job
        # records it (its EvalRun then names it); at 1,024 runs the events were a sixth
        # of the operator's requests, the records another fifth.
        self.acted.created += [r.name for r in self.the_plan.create_jobs if r.name in self.made]
        deleted = [
            *self.the_plan.delete_jobs,
            *sorted(self.deletes - set(self.the_plan.delete_jobs)),
        ]
        self.acted.deleted[:0] = deleted  # before the leftovers job_name_taken replaced
        return self.acted

    def step(self, step: steps.Step) -> Written:
        """One step; the record it wrote, if any."""
        ns = self.owner.namespace
        match step:
            case steps.EnsureAuthSecret(values):
                self.ensure_auth_secret(values)
            case steps.WriteRecord(name, record):
                return self.write_record(name, record)
            case steps.DeleteEvalRun(name):
                _delete(self.api.delete_evalrun, ns, name)
            case steps.DeleteJob(name):
                _delete(self.api.delete_job, ns, name)
            case steps.SetSuspended(name, suspend):
                _set_suspended(self.api, ns, name, suspend)
            case steps.ExpireJob(name):
                # Only Jobs whose run's result is recorded now (its record written
                # before): until then the pod holds the only copy of the result, and the
                # TTL would delete it with the Job.
                if self.views[name].record.final and name not in self.deletes:
                    _expire(self.api, self.jobs[name], self.settings.job_ttl)
            case steps.CreateEvalRun(run):
                return self.create_run(run)
            case steps.CreateJob(run):
                # A Job whose EvalRun could not be made in this pass waits for a later
                # one; so does one whose EvalRun, adopted, has its result already.
                if run.name in self.uids and not self.views[run.name].record.final:
                    return self.create_job(run)
            case steps.ClearRerun():
                annotation = {constants.ANNOTATION_RERUN: None}
                self.api.patch_evaltask_annotations(ns, self.owner.name, annotation)
        return None

    # --- records ---------------------------------------------------------------------

    def write_record(self, name: str, new: records.Record) -> Written:
        new = replace(new, message=redaction.redact(new.message, self.secrets))
        try:
            self.api.patch_evalrun_status(self.owner.namespace, name, records.status_patch(new))
        except kube.Refused as e:
            return self.record_refused(name, new, e)
        self.views[name].record = new
        return name, new

    def record_refused(self, name: str, new: records.Record, e: kube.Refused) -> Written:
        # Written again it is refused again: the run fails saying why, and the other runs'
        # records and Jobs go on. Only a refusal of that too leaves it unrecorded (RBAC,
        # say), to be tried again each pass until an admin fixes it.
        ns, view = self.owner.namespace, self.views[name]
        where = f"{view.run.model.name}/{view.run.task.name}"
        words = records.bounded(redaction.redact(e.message, self.secrets), 500)
        log.warning("%s: the record of EvalRun %s was refused: %s", ns, name, words)
        fallback = records.refused_record(new, words, self.stamp)
        try:
            self.api.patch_evalrun_status(ns, name, records.status_patch(fallback))
        except kube.Refused as again:
            log.warning("%s: EvalRun %s stays unrecorded: %s", ns, name, again)
            self.acted.refused[where] = words
            view.record = self.before.get(name, records.Record())  # what the API server holds
            return None
        # Not in `refused`: the record itself says it now, in this pass and the next ones.
        job = self.jobs.get(name)
        if not new.final and job is not None and not jobstate.is_finished(job):
            self.stop.append(name)
        view.record = fallback
        return name, fallback

    def wait(self, name: str, message: str) -> Written:
        """The run waits, saying why in its record (written only when that changes)."""
        new = replace(self.views[name].record, message=message)
        if new == self.before.get(name):
            self.views[name].record = new
            return None
        return self.write_record(name, new)

    def _note(self, name: str, new: records.Record) -> None:
        """A run that turned final: its event, and its duration for the histogram."""
        old, view = self.before.get(name), self.views[name]
        if not new.final or (old is not None and old.state == new.state):
            return
        where = f"{view.run.model.name}/{view.run.task.name}"
        if new.state == RunState.FAILED:
            self.acted.events.append(
                ("Warning", conditions.RUN_FAILED, f"{where} failed: {new.message}")
            )
        elif new.state == RunState.SUCCEEDED:
            shown = ", ".join(f"{k}={v:g}" for k, v in new.metrics[:20])
            self.acted.events.append(
                ("Normal", conditions.RUN_SUCCEEDED, f"{where} succeeded: {shown}")
            )
        done = new.state in (RunState.SUCCEEDED, RunState.FAILED)
        if done and new.start_time and new.completion_time:
            parse = status_mod.parse_time
            took = parse(new.completion_time) - parse(new.start_time)
            self.acted.finished.append((view.run.task.name, took.total_seconds()))

    # --- the auth Secret -------------------------------------------------------------

    def ensure_auth_secret(self, values: Mapping[str, str]) -> None:
        """The Secret holding literal auth values: one key per such model, nothing else.

        Only a Secret this EvalTask owns is ever changed: a same-named Secret of someone
        else is left alone and said so, and the Jobs then fail to find their key.
        """
        owner = self.owner
        secret = manifests.build_auth_secret(owner, dict(values))
        name = secret["metadata"]["name"]
        try:
            current = self.api.read_secret(owner.namespace, name)
        except kube.NotFound:
            try:
                self.api.create_secret(secret)
            except kube.Refused as e:
                # The runs of these models then wait for their key and fail at the start
                # timeout.
                log.warning(
                    "%s/%s: the auth Secret was refused: %s", owner.namespace, owner.name, e
                )
                said = f"the API server refused Secret {name!r}: {e.message}"
                said = records.bounded(said, 1000)
                self.acted.events.append(("Warning", conditions.AUTH_SECRET_REFUSED, said))
            return
        if records.owner_uid(current, constants.EVALTASK.kind) != owner.uid:
            said = (
                f"Secret {name!r} exists and is not owned by this EvalTask; literal auth "
                "values were not written to it"
            )
            self.acted.events.append(("Warning", conditions.AUTH_SECRET_NOT_OWNED, said))
            return
        data = current.get("data") or {}
        if data == secret["data"]:
            return
        patch = {**{k: None for k in data if k not in secret["data"]}, **secret["data"]}
        self.api.patch_secret(owner.namespace, name, {"data": patch})

    # --- EvalRuns --------------------------------------------------------------------

    def create_run(self, run: plan.DesiredRun) -> Written:
        owner = self.owner
        body = records.build_evalrun(
            owner, run.name, run.model.name, run.task.name, run.fingerprint, run.resolved()
        )
        try:
            self.uids[run.name] = str(self.api.create_evalrun(body)["metadata"]["uid"])
        except kube.Conflict:
            self.run_name_taken(run)
            return None
        except kube.Refused as e:
            log.warning("%s: EvalRun %s refused: %s", owner.namespace, run.name, e)
            self.views[run.name].record = records.Record(
                message=records.bounded(f"the API server refused its EvalRun: {e.message}")
            )
            return None
        if run.name in self.the_plan.record:
            return self.write_record(run.name, self.the_plan.record[run.name])
        return None

    def taken(self, what: str, whose: str, name: str, found: Mapping[str, Any]) -> str:
        """Why a run cannot start: its name is held by someone else's object (said, and
        logged, the same way for its EvalRun and its Job)."""
        kind = what.split()[-1]
        message = (
            f"cannot create its {kind}: the name {name!r} is taken by {what} that is not "
            f"{whose} ({records.holder(found)})"
        )
        log.warning("%s: %s", self.owner.namespace, message)
        return message

    def run_name_taken(self, run: plan.DesiredRun) -> None:
        """A 409: the EvalRun's name is held. Ours (an earlier pass made it, the watch has
        not shown it yet): taken as it is. Left by a former EvalTask of this name (after
        `kubectl delete --cascade=orphan` and a new apply): adopted when its record is
        final, else replaced. Someone else's: the run waits, saying whose it is."""
        owner, view = self.owner, self.views[run.name]
        try:
            found = self.api.get_evalrun(owner.namespace, run.name)
        except kube.NotFound:
            return None  # deleted since: the next pass creates it
        except kube.Refused as e:
            view.record = records.Record(
                message=records.bounded(
                    f"cannot create its EvalRun: the name {run.name!r} is taken, and the "
                    f"operator may not read it: {e.message}"
                )
            )
            return None
        held = records.claim(found, owner, owner.name)
        record = records.from_status(found.get("status"))
        if held == "ours":
            self.uids[run.name] = str(found["metadata"]["uid"])
            view.record = record
            return None
        if held == "foreign":
            message = self.taken("an EvalRun", "this EvalTask's", run.name, found)
            view.record = records.Record(message=message)
            return None
        # Adopted only when nothing of it is live: a final record is the whole result
        # (its Job and pods are evidence only, runtypes.py), made by this operator for
        # the same run (fingerprint), controlled by no one, so that no garbage collector
        # is about to delete it; as a Job controller adopts orphaned pods. Anything else
        # is replaced: an unfinished record's Job and pods carry the former EvalTask's
        # uid, which the operator would have to take over too, and an object controlled
        # by the former EvalTask is the garbage collector's to delete anyway.
        same_run = (found.get("spec") or {}).get("fingerprint") == run.fingerprint
        if record.final and same_run and records.controller(found) is None:
            return self.adopt(run, found, record)
        try:
            _delete(self.api.delete_evalrun, owner.namespace, run.name)
        except kube.Refused as e:
            message = f"cannot replace the EvalRun of an earlier EvalTask of this name: {e.message}"
        else:
            message = "replacing the EvalRun left by an earlier EvalTask of this name"
        log.info("%s: EvalRun %s: %s", owner.namespace, run.name, message)
        view.record = records.Record(message=records.bounded(message))
        return None

    def adopt(self, run: plan.DesiredRun, found: Mapping[str, Any], record: records.Record) -> None:
        owner, meta = self.owner, found["metadata"]
        others = [r for r in meta.get("ownerReferences") or [] if not r.get("controller")]
        patch = {
            "metadata": {
                # The optimistic lock: changed since it was read, it is looked at again.
                "resourceVersion": meta.get("resourceVersion"),
                "labels": {constants.LABEL_EVALTASK_UID: owner.uid},
                "ownerReferences": [*others, owner.reference()],
            }
        }
        try:
            self.api.patch_evalrun(owner.namespace, run.name, patch)
        except (kube.Conflict, kube.NotFound):
            return None  # changed or gone since it was read: the next pass looks again
        except kube.Refused as e:
            log.warning("%s: cannot adopt EvalRun %s: %s", owner.namespace, run.name, e)
            self.views[run.name].record = records.Record(
                message=records.bounded(
                    f"cannot adopt the EvalRun of an earlier EvalTask of this name: {e.message}"
                )
            )
            return None
        log.info("%s: adopted EvalRun %s (%s)", owner.namespace, run.name, record.state)
        self.uids[run.name] = str(meta["uid"])
        self.views[run.name].record = record
        return None

    # --- Jobs ------------------------------------------------------------------------

    def create_job(self, run: plan.DesiredRun) -> Written:
        owner, settings = self.owner, self.settings
        run_owner = records.Owner(
            constants.EVALRUN.kind, run.name, owner.namespace, self.uids[run.name]
        )
        job = manifests.build_job(
            owner,
            run_owner,
            self.evalspec,
            run.model,
            run.task,
            settings.runner_image,
            settings.default_timeout,
        )
        try:
            self.api.create_job(job)
        except kube.Conflict:
            return self.job_name_taken(run, run_owner)
        except kube.Refused as e:
            # The dry-run accepted it, so the cluster changed under us. A quota that
            # frees up, a webhook or RBAC fixed: the run waits (its record says why, the
            # EvalTask's JobRefused wait counts from the first refusal), up to the start
            # timeout. An invalid Job (422) or one too large waits in vain: it fails now.
            log.warning("%s: Job %s refused: %s", owner.namespace, run.name, e)
            timeout = settings.start_timeout
            if checks.permanent(e) or self.refused_for >= timeout:
                why = (
                    ""
                    if checks.permanent(e)
                    else f" for longer than the start timeout of {timeout:g}s"
                )
                failed = replace(
                    self.views[run.name].record,
                    state=RunState.FAILED,
                    completion_time=self.stamp,
                    message=f"the API server refused the Job{why}: {e.message}",
                )
                return self.write_record(run.name, failed)
            return self.wait(
                run.name,
                records.bounded(
                    f"{records.JOB_REFUSED}: {e.status} {e.reason}: {e.message}; tried again "
                    f"with backoff, for at most the start timeout of {timeout:g}s"
                ),
            )
        self.made.add(run.name)
        # Its wait is over: the status says so now, and the next pass records the Job.
        self.views[run.name].record = replace(self.views[run.name].record, message="")
        return None

    def job_name_taken(self, run: plan.DesiredRun, run_owner: records.Owner) -> Written:
        """A 409: the Job's name is held. Ours: made by an earlier pass. Left by a former
        EvalRun of this name (its owner is gone, or it has none): deleted, and ours made
        in a later pass; taking it over would record a result into a record that did not
        start it, and a Job whose owner is gone is the garbage collector's to delete
        anyway. Someone else's: the run waits, saying whose it is."""
        ns = self.owner.namespace
        try:
            found = self.api.get_job(ns, run.name)
        except kube.NotFound:
            return None  # deleted since: the next pass creates it
        except kube.Refused as e:
            return self.wait(
                run.name,
                records.bounded(
                    f"cannot create its Job: the name {run.name!r} is taken, and the operator "
                    f"may not read it: {e.message}"
                ),
            )
        held = records.claim(found, run_owner, self.owner.name)
        if held == "ours":
            return None
        if held == "foreign":
            return self.wait(run.name, self.taken("a Job", "this run's", run.name, found))
        try:
            _delete(self.api.delete_job, ns, run.name)
        except kube.Refused as e:
            return self.wait(
                run.name,
                records.bounded(
                    f"cannot replace the Job left by an earlier EvalRun of this name: {e.message}"
                ),
            )
        self.acted.deleted.append(run.name)
        return self.wait(run.name, "replacing the Job left by an earlier EvalRun of this name")


def _delete_with_the_jobs(pending: list[steps.Stage], stop: list[str], planned: list[str]) -> None:
    """Add the Jobs of runs whose record was refused to the stage that deletes Jobs (made
    where it would be when the plan deletes none): their chains were busy in this plan, so
    no Job of them is created in this pass."""
    stopped = tuple(steps.DeleteJob(n) for n in stop if n not in planned)
    if not stopped:
        return
    at = next(
        (i for i, st in enumerate(pending) if not isinstance(st[0], _BEFORE_JOB_DELETES)),
        len(pending),
    )
    if at < len(pending) and isinstance(pending[at][0], steps.DeleteJob):
        pending[at] += stopped
    else:
        pending.insert(at, stopped)


def _delete(delete: Callable[[str, str], str], namespace: str, name: str) -> None:
    with contextlib.suppress(kube.NotFound):  # already gone is what we wanted
        delete(namespace, name)


def _expire(api: kube.Api, job: Mapping[str, Any], ttl: int) -> None:
    """Set a finished run's Job's ttlSecondsAfterFinished: the TTL controller deletes it
    and its pods then. Only that Job (its uid, a merge patch's precondition), not one made
    since under its name."""
    meta = job["metadata"]
    patch = {"metadata": {"uid": meta.get("uid")}, "spec": {"ttlSecondsAfterFinished": ttl}}
    try:
        api.patch_job(str(meta["namespace"]), str(meta["name"]), patch)
    except (kube.NotFound, kube.Conflict):
        pass  # gone, or replaced: nothing of it to expire
    except kube.Refused as e:
        # Housekeeping only: the Job stays (until its EvalTask goes), and the next pass
        # tries again.
        log.warning("%s: cannot set the TTL of Job %s: %s", meta["namespace"], meta["name"], e)


def _set_suspended(api: kube.Api, namespace: str, name: str, suspend: bool) -> None:
    api.patch_job(
        namespace,
        name,
        {
            "metadata": {
                "annotations": {
                    constants.ANNOTATION_SUSPENDED_BY_OPERATOR: "true" if suspend else None
                }
            },
            "spec": {"suspend": suspend},
        },
    )
