"""One Job and its pods -> the state of its run, in words a user can act on.

Only the Job's own terminal conditions (Complete, Failed) end a run: the Job controller
sets them after its pods have stopped, so a run never finishes while its pod still runs.
The pods add the detail: the collector's result, an exit code, a log tail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from eval_operator import constants
from eval_runner import results

JOB_NAME_LABELS: Final = ("batch.kubernetes.io/job-name", "job-name")
LOG_TAIL_LINES: Final = 10
LOG_TAIL_CHARS: Final = 1000


@dataclass(frozen=True)
class JobOutcome:
    state: str  # a statustypes.RunState
    attempts: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    reused_from: str = ""


def pods_of(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The Job's pods, oldest first."""
    name = job["metadata"]["name"]
    mine = [
        p
        for p in pods
        if any(p["metadata"].get("labels", {}).get(k) == name for k in JOB_NAME_LABELS)
    ]
    return sorted(mine, key=lambda p: p["metadata"].get("creationTimestamp") or "")


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = job.get("status", {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True"}


def _container(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    status = pod.get("status", {})
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if c.get("name") == name:
            found: Mapping[str, Any] = c
            return found
    return None


def _terminated(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    container = _container(pod, name)
    if container is None:
        return None
    terminated: Mapping[str, Any] | None = (container.get("state") or {}).get("terminated")
    return terminated


def log_tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    return tail if len(tail) <= LOG_TAIL_CHARS else "..." + tail[-LOG_TAIL_CHARS:]


def explain_pod_failure(pod: Mapping[str, Any]) -> str:
    """Why a failed pod failed: the task's exit, or the collector's verdict on metrics.json."""
    task = _terminated(pod, constants.TASK_CONTAINER)
    if task is not None and task.get("exitCode", 0) != 0:
        text = f"the task container exited with code {task['exitCode']}"
        if task.get("reason") and task["reason"] != "Error":
            text += f" ({task['reason']})"
        tail = log_tail(task.get("message") or "")
        return text + (f"; last output:\n{tail}" if tail else "")
    collector = _terminated(pod, constants.COLLECTOR_CONTAINER)
    if collector is not None and collector.get("exitCode", 0) != 0:
        reason = (collector.get("message") or "").strip()
        return reason or f"the collector exited with code {collector['exitCode']}"
    status = pod.get("status", {})
    if status.get("reason") or status.get("message"):
        return ": ".join(s for s in (status.get("reason"), status.get("message")) if s)
    return ""


def _waiting_reason(pod: Mapping[str, Any]) -> str:
    for name in (constants.TASK_CONTAINER, constants.COLLECTOR_CONTAINER):
        container = _container(pod, name)
        waiting = ((container or {}).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in ("PodInitializing",):
            return f"{name}: {waiting['reason']}" + (
                f": {waiting['message']}" if waiting.get("message") else ""
            )
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            detail = f"{condition.get('reason', '')} {condition.get('message', '')}".strip()
            return f"pod not scheduled: {detail}"
    return ""


def _is_running(pod: Mapping[str, Any]) -> bool:
    if pod.get("status", {}).get("phase") == "Running":
        return True
    task = _container(pod, constants.TASK_CONTAINER)
    return "running" in ((task or {}).get("state") or {})


def describe(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobOutcome:
    """The run's state as one Job and its pods show it now."""
    status = job.get("status", {})
    mine = pods_of(job, pods)
    attempts = (
        int(status.get("succeeded", 0))
        + int(status.get("failed", 0))
        + int(status.get("active", 0))
    )
    attempts = max(attempts, len(mine))
    start = status.get("startTime")
    conditions = _true_conditions(job)

    if "Complete" in conditions:
        done = status.get("completionTime") or conditions["Complete"].get("lastTransitionTime")
        succeeded = [p for p in mine if p.get("status", {}).get("phase") == "Succeeded"]
        if not succeeded:
            return JobOutcome(
                "Failed",
                attempts,
                start,
                done,
                message="the Job completed but its pod is gone, so its metrics could not be "
                f"read; rerun it with the annotation {constants.ANNOTATION_RERUN}=failed",
            )
        collector = _terminated(succeeded[-1], constants.COLLECTOR_CONTAINER) or {}
        try:
            metrics = results.decode(collector.get("message") or "")
        except results.MetricsError as e:
            return JobOutcome("Failed", attempts, start, done, message=f"collector: {e}")
        return JobOutcome("Succeeded", attempts, start, done, metrics=metrics)

    if "Failed" in conditions:
        failed = conditions["Failed"]
        done = failed.get("lastTransitionTime")
        reason = failed.get("reason", "")
        if reason == "DeadlineExceeded":
            limit = job.get("spec", {}).get("activeDeadlineSeconds")
            message = (
                f"the run exceeded its timeout of {limit}s (timeoutSeconds) and was stopped"
                if limit
                else "the run exceeded its deadline and was stopped"
            )
        else:
            failed_pods = [p for p in mine if p.get("status", {}).get("phase") == "Failed"]
            detail = explain_pod_failure(failed_pods[-1]) if failed_pods else ""
            message = detail or failed.get("message") or reason or "the Job failed"
        if attempts > 1:
            message = f"failed after {attempts} attempts: {message}"
        return JobOutcome("Failed", attempts, start, done, message=message)

    if job.get("spec", {}).get("suspend"):
        annotations = job["metadata"].get("annotations") or {}
        ours = annotations.get(constants.ANNOTATION_SUSPENDED_BY_OPERATOR) == "true"
        message = (
            "suspended (spec.suspend is true)"
            if ours
            else "waiting for admission: the Job is suspended by another controller (e.g. a Kueue "
            "queue); it starts when admitted"
        )
        return JobOutcome("Pending", attempts, start, message=message)

    if any(_is_running(p) for p in mine):
        return JobOutcome("Running", attempts, start)
    waiting = next((w for w in (_waiting_reason(p) for p in reversed(mine)) if w), "")
    return JobOutcome("Pending", attempts, start, message=waiting)


def is_finished(job: Mapping[str, Any]) -> bool:
    return bool({"Complete", "Failed"} & set(_true_conditions(job)))
