"""EvalRun records: building them, reading them, and the score of a result.

Pure. A record is the `status` of an EvalRun as a plain dict in the API's shape; `Record`
is the same, typed, for planning. Metrics are a list of (name, value) in the order the
task reported them: the API server sorts map keys, so a map would lose that order and
with it the default primary metric (the first one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from eval_operator import constants, naming, spec, statustypes

Metrics = tuple[tuple[str, float], ...]
FINAL_STATES: Final = statustypes.TERMINAL_STATES


@dataclass(frozen=True)
class Record:
    state: str = "Pending"  # a statustypes.RunState
    job: str = ""
    attempts: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    metrics: Metrics = ()
    score: float | None = None
    message: str = ""
    reused_from: str = ""
    progress: Mapping[str, Any] | None = field(default=None, compare=True)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def with_score(self, task: spec.TaskConfig) -> Record:
        return replace(self, score=score(task, self.metrics))


def score(task: spec.TaskConfig, metrics: Metrics) -> float | None:
    """metricWeights' weighted mean, else primaryMetric's value, else the first metric's;
    None when the run lacks a metric that the rule names."""
    if not metrics:
        return None
    values = dict(metrics)
    if task.metric_weights:
        if any(name not in values for name in task.metric_weights):
            return None
        total = sum(task.metric_weights.values())
        return sum(values[name] * w for name, w in task.metric_weights.items()) / total
    name = task.primary_metric or metrics[0][0]
    return values.get(name)


def bounded(message: str, limit: int = statustypes.MAX_MESSAGE) -> str:
    """A message cut to `limit` characters, keeping its end (a log tail ends there)."""
    if len(message) <= limit:
        return message
    return message[: limit // 2 - 3] + " … " + message[-(limit // 2 - 3) :]


def from_status(status: Mapping[str, Any] | None) -> Record:
    status = status or {}
    metrics = tuple(
        (str(m.get("name", "")), float(m.get("value", 0.0))) for m in status.get("metrics") or []
    )
    return Record(
        state=str(status.get("state") or "Pending"),
        job=str(status.get("job") or ""),
        attempts=int(status.get("attempts") or 0),
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
        metrics=metrics,
        score=status.get("score"),
        message=str(status.get("message") or ""),
        reused_from=str(status.get("reusedFrom") or ""),
        progress=status.get("progress"),
    )


def to_status(record: Record) -> dict[str, Any]:
    status: dict[str, Any] = {
        "state": record.state,
        "job": record.job,
        "attempts": record.attempts,
        "metrics": [{"name": n, "value": v} for n, v in record.metrics],
        "message": bounded(record.message),
    }
    optional = {
        "startTime": record.start_time,
        "completionTime": record.completion_time,
        "score": record.score,
        "reusedFrom": record.reused_from or None,
        "progress": dict(record.progress) if record.progress else None,
    }
    status.update({k: v for k, v in optional.items() if v is not None})
    return status


_STATUS_KEYS: Final = (
    "state",
    "job",
    "attempts",
    "startTime",
    "completionTime",
    "metrics",
    "score",
    "message",
    "reusedFrom",
    "progress",
)


def status_patch(record: Record) -> dict[str, Any]:
    """A merge patch that makes an EvalRun's status exactly `record` (absent keys cleared)."""
    status = to_status(record)
    return {**{k: None for k in _STATUS_KEYS if k not in status}, **status}


@dataclass(frozen=True)
class Owner:
    """What owns an object we build: deletion cascades through it."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": constants.API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def build_evalrun(
    evaltask: Owner, name: str, model: str, task: str, fingerprint: str
) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.RUN_KIND,
        "metadata": {
            "name": name,
            "namespace": evaltask.namespace,
            "labels": naming.run_labels(evaltask.name, evaltask.uid, model, task, fingerprint),
            "ownerReferences": [evaltask.reference()],
        },
        "spec": {"model": model, "task": task, "fingerprint": fingerprint},
    }


def entry(model: str, task: str, record: Record) -> dict[str, Any]:
    """The compact entry of a run in the EvalTask's status."""
    out: dict[str, Any] = {"model": model, "task": task, "state": record.state}
    if record.score is not None:
        out["score"] = record.score
    return out


def owner_uid(obj: Mapping[str, Any], kind: str) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def by_name(objects: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(o["metadata"]["name"]): o for o in objects}
