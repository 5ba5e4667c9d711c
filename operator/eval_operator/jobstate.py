"""One Job and its pods -> the state of its run, in words a user can act on.

Only the Job's own terminal conditions (Complete, Failed) end a run: the Job controller
sets them after its pods have stopped, so a run never finishes while its pod still runs.
The pods add the detail: the collector's result, an exit code, a log tail, why a pod
cannot start. Two things end a run early, because nothing else would: a pod that cannot
be created or started (a quota, a missing service account, an image that cannot be
pulled) for longer than the start timeout, and at once a pod that waiting cannot fix (an
invalid image name, a Secret or ConfigMap without the key it needs).

A pod is the Job's only if the Job controls it (its controller ownerReference and its
controller-uid label both name the Job's uid): labels alone anyone can copy, and a pod
made by someone else must never pass for the run's result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from eval_operator import constants
from eval_operator.statustypes import RunState
from eval_runner import results

LOG_TAIL_LINES: Final = 10
LOG_TAIL_CHARS: Final = 1000
# What is read of a failed task's log: its last LOG_TAIL_LINES lines, cut at this many
# bytes from their start (pods/log's limitBytes); the message keeps less of their end.
LOG_TAIL_BYTES: Final = 65536
# A probe still waiting after this long means its model does not answer (yet).
PROBE_GRACE_SECONDS: Final = 5.0
# Container waiting reasons that no amount of waiting fixes by itself.
START_FAILURES: Final = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
# Of those, the ones that fail the run at once: the spec or the cluster must change first.
# A missing Secret or ConfigMap (`secret "x" not found`) is not one: it may yet be created,
# as API.md promises ("unfinished runs wait ... until it exists again").
PERMANENT_START_FAILURES: Final = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# The kubelet's words for an env var whose Secret or ConfigMap lacks its key
# (kubelet_pods.go makeEnvironmentVariables; older kubelets capitalise "Couldn't").
_MISSING_KEY: Final = re.compile(r"couldn't find key \S+ in (Secret|ConfigMap) \S+", re.IGNORECASE)


@dataclass(frozen=True)
class JobOutcome:
    state: RunState
    attempts: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    metrics: tuple[tuple[str, float], ...] = ()
    message: str = ""
    # Seconds the probe has waited for the model, once past the grace period.
    probing_for: float | None = None
    started: bool = False  # some pod of the Job got to run a container
    start_failed: bool = False  # could not create or start a pod within the start timeout
    # Seconds until the clock alone changes this outcome (a timeout, the probe's grace).
    recheck_after: float | None = None


def controller_uid(pod: Mapping[str, Any]) -> str:
    """The uid of the Job that controls the pod, or "" when none does.

    The Job controller sets both the pod's controller ownerReference and its
    controller-uid label to the Job's uid; a pod where they are missing or disagree was
    made (or relabelled) by someone else."""
    meta = pod.get("metadata") or {}
    owners = [r for r in meta.get("ownerReferences") or [] if r.get("controller") is True]
    if len(owners) != 1:
        return ""
    uid = str(owners[0].get("uid") or "")
    label = (meta.get("labels") or {}).get(constants.LABEL_CONTROLLER_UID)
    return uid if uid and label == uid else ""


def pods_by_job(pods: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Job uid -> its pods, oldest first. Matched by the uid of the Job that controls the
    pod, not by the job-name label: a rerun reuses the name, never the uid."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        uid = controller_uid(pod)
        if uid:
            out.setdefault(uid, []).append(pod)
    for mine in out.values():
        mine.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return out


def _true_conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = obj.get("status", {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def _container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    status = pod.get("status", {})
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if c.get("name") == name:
            found: Mapping[str, Any] = c
            return found
    return None


def _state(pod: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any] | None:
    container = _container(pod, name)
    if container is None:
        return None
    state: Mapping[str, Any] | None = (container.get("state") or {}).get(key)
    return state


def log_tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    return tail if len(tail) <= LOG_TAIL_CHARS else "..." + tail[-LOG_TAIL_CHARS:]


def disruption(pod: Mapping[str, Any]) -> str:
    """Why the pod was disrupted (evicted, preempted, drained), or ""."""
    condition = _true_conditions(pod).get("DisruptionTarget")
    if condition is None:
        return ""
    detail = ": ".join(s for s in (condition.get("reason"), condition.get("message")) if s)
    return f"the pod was evicted ({detail})" if detail else "the pod was evicted"


def task_failed(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's task container ended with a non-zero exit code."""
    task = _state(pod, constants.TASK_CONTAINER, "terminated")
    return task is not None and task.get("exitCode", 0) != 0


def explain_pod_failure(pod: Mapping[str, Any], logs: Mapping[str, str] | None = None) -> str:
    """Why a failed pod failed: disruption, the probe, the task's exit, or the collector.

    `logs`: pod name -> the end of its task's log, as the pass read it (pods/log); else
    what the task wrote as its termination message, if anything."""
    evicted = disruption(pod)
    if evicted:
        return evicted
    probe = _state(pod, constants.PROBE_CONTAINER, "terminated")
    if probe is not None and probe.get("exitCode", 0) != 0:
        why = (probe.get("message") or "").strip()
        return f"the model service did not answer: {why}" if why else "the probe failed"
    task = _state(pod, constants.TASK_CONTAINER, "terminated")
    if task is not None and task.get("exitCode", 0) != 0:
        text = f"the task container exited with code {task['exitCode']}"
        if task.get("reason") and task["reason"] != "Error":
            text += f" ({task['reason']})"
        said = (logs or {}).get(str(pod.get("metadata", {}).get("name", "")))
        tail = log_tail(said if said is not None else task.get("message") or "")
        return text + (f"; last output:\n{tail}" if tail else "")
    collector = _state(pod, constants.COLLECTOR_CONTAINER, "terminated")
    if collector is not None and collector.get("exitCode", 0) != 0:
        reason = (collector.get("message") or "").strip()
        return reason or f"the collector exited with code {collector['exitCode']}"
    status = pod.get("status", {})
    if status.get("reason") or status.get("message"):
        return ": ".join(s for s in (status.get("reason"), status.get("message")) if s)
    return ""


def _waiting(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(reason, message) of why the pod waits, or ("", "")."""
    for name in (
        constants.PROBE_CONTAINER,
        constants.TASK_CONTAINER,
        constants.COLLECTOR_CONTAINER,
    ):
        waiting = _state(pod, name, "waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in ("PodInitializing",):
            text = f"{name}: {reason}" + (
                f": {waiting['message']}" if waiting.get("message") else ""
            )
            return reason, text
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            detail = f"{condition.get('reason', '')} {condition.get('message', '')}".strip()
            return "Unschedulable", f"pod not scheduled: {detail}"
    return "", ""


def _ran(pod: Mapping[str, Any]) -> bool:
    """Some container of the pod got to run."""
    status = pod.get("status", {})
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = c.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def task_running(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's task container runs (or, before its status says so, the pod)."""
    if _state(pod, constants.TASK_CONTAINER, "running") is not None:
        return True
    return bool(pod.get("status", {}).get("phase") == "Running")


def _since(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return 0.0
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def describe(
    job: Mapping[str, Any],
    mine: Sequence[Mapping[str, Any]],
    now: datetime,
    start_timeout: float,
    create_failure: str = "",
    logs: Mapping[str, str] | None = None,
) -> JobOutcome:
    """The run's state as one Job and its pods (`mine`, oldest first) show it now.

    `create_failure`: the Job controller's latest FailedCreate event message, if any.
    `logs`: pod name -> the end of its failed task's log (explain_pod_failure).
    """
    # Whatever the caller passed, only the pods this Job controls speak for it (the
    # collector's result is read from one of them).
    uid = job["metadata"].get("uid")
    mine = [p for p in mine if controller_uid(p) == uid]
    status = job.get("status", {})
    counted = (
        int(status.get("succeeded", 0))
        + int(status.get("failed", 0))
        + int(status.get("active", 0))
    )
    attempts = max(counted, sum(1 for p in mine if not disruption(p)))
    start = status.get("startTime")
    conditions = _true_conditions(job)
    started = any(_ran(p) for p in mine)

    if "Complete" in conditions:
        done = status.get("completionTime") or conditions["Complete"].get("lastTransitionTime")
        succeeded = [p for p in mine if p.get("status", {}).get("phase") == "Succeeded"]
        if not succeeded:
            return JobOutcome(
                RunState.FAILED,
                attempts,
                start,
                done,
                message="the Job completed but its pod was gone before its result was read; "
                f"rerun it with the annotation {constants.ANNOTATION_RERUN}=failed",
                started=True,
            )
        collector = _state(succeeded[-1], constants.COLLECTOR_CONTAINER, "terminated") or {}
        try:
            metrics = results.decode(collector.get("message") or "")
        except results.MetricsError as e:
            return JobOutcome(
                RunState.FAILED, attempts, start, done, message=f"collector: {e}", started=True
            )
        return JobOutcome(
            RunState.SUCCEEDED, attempts, start, done, metrics=tuple(metrics.items()), started=True
        )

    if "Failed" in conditions:
        failed = conditions["Failed"]
        done = failed.get("lastTransitionTime")
        reason = failed.get("reason", "")
        if reason == "DeadlineExceeded":
            limit = job.get("spec", {}).get("activeDeadlineSeconds")
            message = (
                f"the run exceeded its deadline of {limit}s (timeoutSeconds plus "
                "probeTimeoutSeconds) and was stopped"
                if limit
                else "the run exceeded its deadline and was stopped"
            )
        else:
            failed_pods = [p for p in mine if p.get("status", {}).get("phase") == "Failed"]
            detail = explain_pod_failure(failed_pods[-1], logs) if failed_pods else ""
            message = detail or failed.get("message") or reason or "the Job failed"
        if attempts > 1:
            message = f"failed after {attempts} attempts: {message}"
        return JobOutcome(RunState.FAILED, attempts, start, done, message=message, started=started)

    if job.get("spec", {}).get("suspend"):
        annotations = job["metadata"].get("annotations") or {}
        ours = annotations.get(constants.ANNOTATION_SUSPENDED_BY_OPERATOR) == "true"
        message = (
            "suspended (spec.suspend is true)"
            if ours
            else "waiting for admission: the Job is suspended by another controller (e.g. a Kueue "
            "queue); it starts when admitted"
        )
        return JobOutcome(RunState.PENDING, attempts, start, message=message, started=started)

    live = [p for p in mine if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
    current = live[-1] if live else None
    if current is not None and task_running(current):
        return JobOutcome(RunState.RUNNING, attempts, start, started=True)

    if current is None:
        waited = _since(job["metadata"].get("creationTimestamp"), now)
        if create_failure:
            message = f"the Job cannot create its pod: {create_failure}"
            return _maybe_start_failure(attempts, start, message, waited, start_timeout, started)
        evicted = next((disruption(p) for p in reversed(mine) if disruption(p)), "")
        message = f"{evicted}; a new pod replaces it" if evicted else ""
        # No pod yet: look again soon, to say why if none comes.
        return JobOutcome(
            RunState.PENDING, attempts, start, message=message, started=started, recheck_after=5.0
        )

    probing = _state(current, constants.PROBE_CONTAINER, "running")
    if probing is not None:
        waited = _since(probing.get("startedAt"), now)
        if waited >= PROBE_GRACE_SECONDS:
            limit = next(
                (
                    e.get("value")
                    for e in _probe_env(job)
                    if e.get("name") == "EVAL_PROBE_TIMEOUT_SECONDS"
                ),
                "?",
            )
            return JobOutcome(
                RunState.PENDING,
                attempts,
                start,
                message=f"waiting for the model service to answer: the probe has waited "
                f"{waited:.0f}s of at most {limit}s (probeTimeoutSeconds)",
                probing_for=waited,
                started=True,
                recheck_after=30.0,
            )
        return JobOutcome(
            RunState.PENDING,
            attempts,
            start,
            started=True,
            recheck_after=PROBE_GRACE_SECONDS - waited,
        )

    reason, message = _waiting(current)
    if _permanent(reason, message):
        return JobOutcome(
            RunState.FAILED,
            attempts,
            start,
            message=f"{message} (waiting does not fix this)",
            started=started,
            start_failed=True,
        )
    if reason in START_FAILURES:
        waited = _since(current["metadata"].get("creationTimestamp"), now)
        return _maybe_start_failure(attempts, start, message, waited, start_timeout, started)
    return JobOutcome(RunState.PENDING, attempts, start, message=message, started=started)


def _permanent(reason: str, message: str) -> bool:
    """Whether a pod waits for something that waiting never brings."""
    if reason in PERMANENT_START_FAILURES:
        return True
    return reason == "CreateContainerConfigError" and bool(_MISSING_KEY.search(message))


def _maybe_start_failure(
    attempts: int,
    start: str | None,
    message: str,
    waited: float,
    start_timeout: float,
    started: bool,
) -> JobOutcome:
    if waited >= start_timeout:
        return JobOutcome(
            RunState.FAILED,
            attempts,
            start,
            message=f"{message} (could not start within the start timeout of {start_timeout:g}s)",
            started=started,
            start_failed=True,
        )
    return JobOutcome(
        RunState.PENDING,
        attempts,
        start,
        message=message,
        started=started,
        recheck_after=start_timeout - waited,
    )


def _probe_env(job: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    pod_spec = job.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod_spec.get("initContainers") or []:
        if container.get("name") == constants.PROBE_CONTAINER:
            env: list[Mapping[str, Any]] = container.get("env") or []
            return env
    return []


def is_finished(job: Mapping[str, Any]) -> bool:
    return bool({"Complete", "Failed"} & set(_true_conditions(job)))


def _conditions_digest(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    conditions = obj.get("status", {}).get("conditions") or []
    return tuple((c.get("type"), c.get("status"), c.get("reason")) for c in conditions)


def job_digest(job: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a Job a pass reads: an event that leaves it unchanged (the Job controller's
    bookkeeping of pod finalizers, say) is no news."""
    status = job.get("status") or {}
    return (
        _conditions_digest(job),
        *(status.get(k) for k in ("active", "ready", "succeeded", "failed", "startTime")),
        (job.get("spec") or {}).get("suspend"),
        bool(job.get("metadata", {}).get("deletionTimestamp")),
    )


def pod_digest(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pod a pass reads: its phase, conditions, and each container's state (with
    why it waits or how it ended)."""
    status = pod.get("status") or {}
    containers = []
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = c.get("state") or {}
        detail = state.get("waiting") or state.get("terminated") or {}
        containers.append(
            (c.get("name"), tuple(state), detail.get("reason"), detail.get("message"))
        )
    return (
        status.get("phase"),
        status.get("reason"),
        _conditions_digest(pod),
        tuple(containers),
        bool(pod.get("metadata", {}).get("deletionTimestamp")),
    )
