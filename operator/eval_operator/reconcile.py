"""One reconcile pass for one EvalTask: observe, validate, plan, act, write status.

Every kopf event calls this same function; it never depends on which event fired. It
reads the EvalTask, its Jobs and its pods afresh, so a restarted operator picks up
exactly where the API says things are. All I/O goes through `kube.Api`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from eval_operator import (
    checks,
    conditions,
    constants,
    kube,
    manifests,
    naming,
    plan,
    probe,
    spec,
    statustypes,
)
from eval_operator import status as status_mod

log = logging.getLogger(__name__)

REDACTED: Final = "[redacted]"
_STATUS_KEYS: Final = tuple(
    f.alias or name for name, f in statustypes.EvalTaskStatus.model_fields.items()
)


@dataclass(frozen=True)
class Config:
    runner_image: str = constants.DEFAULT_RUNNER_IMAGE
    prober: probe.Prober = probe.probe_url


@dataclass
class Outcome:
    """What one pass did, for metrics and logs."""

    phase: str = ""
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status_written: bool = False
    invalid: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    # (task, seconds) of the runs that finished in this pass, for the duration histogram.
    finished: list[tuple[str, float]] = field(default_factory=list)


def reconcile(
    api: kube.Api, namespace: str, name: str, now: datetime, config: Config
) -> Outcome | None:
    """Bring one EvalTask one step closer to its spec. None when it no longer exists."""
    try:
        body = api.get_evaltask(namespace, name)
    except kube.NotFound:
        return None
    if body["metadata"].get("deletionTimestamp"):
        return None  # owner references delete the Jobs; nothing to do
    uid = body["metadata"]["uid"]
    selector = naming.selector(uid)
    observed = plan.Observed(
        evaltask=body,
        jobs=api.list_jobs(namespace, selector),
        pods=api.list_pods(namespace, selector),
        now=now,
    )
    owner = manifests.Owner(name, namespace, uid)
    secrets: list[str] = []
    try:
        evalspec = spec.parse_spec(body.get("spec"))
        problems = checks.check_references(api, namespace, evalspec, secrets)
        if not problems:
            problems = _dry_run_once(api, owner, evalspec, config, observed)
        if problems:
            raise spec.SpecInvalid(problems)
    except spec.SpecInvalid as e:
        return _report_invalid(api, observed, e.problems)

    outcome = Outcome()
    literal = manifests.literal_auth_values(evalspec)
    secrets += literal.values()
    if literal:
        _ensure_auth_secret(api, owner, literal)
    reusable = plan.reusable_runs(name, api.list_evaltasks(namespace)) if evalspec.reuse else {}
    the_plan = plan.plan(evalspec, observed, reusable)
    reachability = None
    if evalspec.probe and the_plan.create:
        # Probe only the models whose chain is about to start, then plan again without
        # the ones that did not answer (planning is pure, so twice is cheap).
        reachability = _probe(config, evalspec, {r.model.name for r in the_plan.create})
        unreachable = {m: why for m, why in reachability.items() if why}
        if unreachable:
            the_plan = plan.plan(evalspec, observed, reusable, unreachable)
    _act(api, owner, evalspec, the_plan, config, outcome, now)

    new_status = status_mod.summarize(
        evalspec,
        the_plan.runs,
        observed.previous_status,
        observed.generation,
        now,
        reachability,
    )
    new_status = redact(new_status, secrets)
    _post_events(api, observed, evalspec, new_status, literal, outcome)
    outcome.phase = new_status["phase"]
    outcome.status = new_status
    outcome.finished = finished_runs(observed.previous_status, new_status)
    outcome.status_written = _write_status(api, observed, new_status)
    if the_plan.rerun_handled:
        api.patch_evaltask_annotations(namespace, name, {constants.ANNOTATION_RERUN: None})
    return outcome


def _probe(config: Config, evalspec: spec.EvalTaskSpec, names: set[str]) -> dict[str, str]:
    """model name -> "" when its URL answered, else why not."""
    return {m.name: config.prober(m.url) or "" for m in evalspec.models if m.name in names}


def _dry_run_once(
    api: kube.Api,
    owner: manifests.Owner,
    evalspec: spec.EvalTaskSpec,
    config: Config,
    observed: plan.Observed,
) -> list[spec.SpecProblem]:
    """The server-side dry-run runs once per generation; SpecValid records its verdict."""
    cond = conditions.get(observed.previous_status.get("conditions") or [], conditions.SPEC_VALID)
    if cond and cond.get("observedGeneration") == observed.generation:
        if cond.get("status") == "True":
            return []
        if cond.get("reason") == conditions.JOB_REJECTED:
            return [spec.SpecProblem("", conditions.JOB_REJECTED, str(cond.get("message")))]
    return checks.dry_run(api, owner, evalspec, config.runner_image)


def _report_invalid(
    api: kube.Api, observed: plan.Observed, problems: list[spec.SpecProblem]
) -> Outcome:
    message = "; ".join(str(p) for p in problems)
    reason = problems[0].reason
    previous = observed.previous_status
    new_status = status_mod.invalid(message, reason, previous, observed.generation, observed.now)
    old = conditions.get(previous.get("conditions") or [], conditions.SPEC_VALID)
    if not old or old.get("status") != "False" or old.get("message") != message:
        log.warning("%s/%s: invalid spec: %s", observed.namespace, observed.name, message)
        _event(api, observed.evaltask, "Warning", reason, message)
    written = _write_status(api, observed, new_status)
    return Outcome(phase="Failed", status_written=written, invalid=True, status=new_status)


def _ensure_auth_secret(api: kube.Api, owner: manifests.Owner, values: dict[str, str]) -> None:
    secret = manifests.build_auth_secret(owner, values)
    try:
        current = api.read_secret(owner.namespace, secret["metadata"]["name"])
    except kube.NotFound:
        current = {}
    if current.get("data") != secret["data"]:
        api.apply_secret(secret)


def _act(
    api: kube.Api,
    owner: manifests.Owner,
    evalspec: spec.EvalTaskSpec,
    the_plan: plan.Plan,
    config: Config,
    outcome: Outcome,
    now: datetime,
) -> None:
    for job_name in the_plan.delete:
        with contextlib.suppress(kube.NotFound):  # already gone is what we wanted
            api.delete_job(owner.namespace, job_name)
        outcome.deleted.append(job_name)
    for job_name in the_plan.suspend:
        api.patch_job(
            owner.namespace,
            job_name,
            {
                "metadata": {"annotations": {constants.ANNOTATION_SUSPENDED_BY_OPERATOR: "true"}},
                "spec": {"suspend": True},
            },
        )
    for job_name in the_plan.unsuspend:
        api.patch_job(
            owner.namespace,
            job_name,
            {
                "metadata": {"annotations": {constants.ANNOTATION_SUSPENDED_BY_OPERATOR: None}},
                "spec": {"suspend": False},
            },
        )
    entries = {(e["model"], e["task"]): e for e in the_plan.runs}
    for run in the_plan.create:
        job = manifests.build_job(owner, evalspec, run.model, run.task, config.runner_image)
        try:
            api.create_job(job)
        except kube.Conflict:
            continue  # created by an earlier pass whose result we have not seen yet
        except kube.Invalid as e:
            # The dry-run accepted it, so the cluster changed under us (an admission
            # policy, a quota): fail the run with the server's words rather than loop.
            entry = entries[(run.model.name, run.task.name)]
            entry.update(
                state="Failed",
                completionTime=status_mod.timestamp(now),
                message=f"the API server rejected the Job: {e.message}",
            )
            continue
        outcome.created.append(run.job_name)


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every known secret value in the strings of a status."""
    needles = set()
    for s in secrets:
        needles.add(s)
        if s.lower().startswith("bearer "):
            needles.add(s[7:].strip())
    needles = {n for n in needles if len(n) >= 4}
    if not needles:
        return value

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            for needle in needles:
                v = v.replace(needle, REDACTED)
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _post_events(
    api: kube.Api,
    observed: plan.Observed,
    evalspec: spec.EvalTaskSpec,
    new_status: Mapping[str, Any],
    literal: Mapping[str, str],
    outcome: Outcome,
) -> None:
    previous = observed.previous_status
    old_valid = conditions.get(previous.get("conditions") or [], conditions.SPEC_VALID)
    new_generation = not old_valid or old_valid.get("observedGeneration") != observed.generation
    if literal and new_generation:
        _event(
            api,
            observed.evaltask,
            "Warning",
            conditions.LITERAL_AUTH_VALUE,
            "models " + ", ".join(sorted(literal)) + " give auth.value inline; it was moved "
            "into a Secret owned by this EvalTask, but use auth.secretRef instead",
        )
    for job_name in outcome.created:
        _event(api, observed.evaltask, "Normal", conditions.JOB_CREATED, f"created Job {job_name}")
    before = _run_states(previous)
    for run in new_status["runs"]:
        key = (run["model"], run["task"], run["fingerprint"])
        if before.get(key) == run["state"]:
            continue
        where = f"{run['model']}/{run['task']}"
        if run["state"] == "Failed":
            _event(
                api,
                observed.evaltask,
                "Warning",
                conditions.RUN_FAILED,
                f"{where} failed: {run['message']}",
            )
        elif run["state"] == "Succeeded":
            _event(
                api,
                observed.evaltask,
                "Normal",
                conditions.RUN_SUCCEEDED,
                f"{where} succeeded: " + ", ".join(f"{k}={v:g}" for k, v in run["metrics"].items()),
            )


def _run_states(status: Mapping[str, Any]) -> dict[tuple[Any, Any, Any], Any]:
    """(model, task, fingerprint) -> state, as a status recorded them."""
    return {
        (r.get("model"), r.get("task"), r.get("fingerprint")): r.get("state")
        for r in status.get("runs") or []
    }


def finished_runs(
    previous: Mapping[str, Any], new_status: Mapping[str, Any]
) -> list[tuple[str, float]]:
    """Runs that reached Succeeded or Failed in this pass, with how long their Job ran."""
    before = _run_states(previous)
    done = []
    for run in new_status.get("runs") or []:
        key = (run["model"], run["task"], run["fingerprint"])
        if run["state"] in ("Succeeded", "Failed") and before.get(key) != run["state"]:
            start, end = run.get("startTime"), run.get("completionTime")
            if start and end:
                seconds = (_parse_time(end) - _parse_time(start)).total_seconds()
                done.append((run["task"], seconds))
    return done


def _parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _event(
    api: kube.Api, evaltask: Mapping[str, Any], type_: str, reason: str, message: str
) -> None:
    # An event is a courtesy: failing to post one must not fail the pass.
    try:
        api.post_event(evaltask, type_, reason, message)
    except kube.ApiError as e:
        log.info("could not post event %s: %s", reason, e)


def _write_status(api: kube.Api, observed: plan.Observed, new_status: Mapping[str, Any]) -> bool:
    """Patch status only when it differs; keys we no longer set are removed."""
    previous = observed.previous_status
    patch: dict[str, Any] = {k: v for k, v in new_status.items() if previous.get(k) != v}
    patch.update({k: None for k in _STATUS_KEYS if k in previous and k not in new_status})
    if not patch:
        return False
    api.patch_evaltask_status(observed.namespace, observed.name, patch)
    return True
