"""EvalRun records: building them, reading them, and the score of a result.

Pure. A record is the `status` of an EvalRun as a plain dict in the API's shape; `Record`
is the same, typed, for planning. Metrics are a list of (name, value) in the order the
task reported them: the API server sorts map keys, so a map would lose that order and
with it the default primary metric (the first one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from eval_operator import constants, naming, spec, statustypes
from eval_operator.statustypes import RunState

Metrics = tuple[tuple[str, float], ...]
FINAL_STATES: Final = statustypes.TERMINAL_STATES
# How a record the API server refused begins: what is left of it says so (refused_record).
REFUSED_RECORD: Final = "the API server refused this run's record"
# How the message of a run whose Job create admission refuses begins (it waits, and
# status.py finds the EvalTask's JobRefused wait in its record, which outlives the pass).
JOB_REFUSED: Final = "the API server refuses its Job"


@dataclass(frozen=True)
class Record:
    state: RunState = RunState.PENDING
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
        return weighted_mean((values[name], w) for name, w in task.metric_weights.items())
    value = values.get(task.primary_metric or metrics[0][0])
    return value if value is not None and math.isfinite(value) else None


def weighted_mean(pairs: Iterable[tuple[float, float]]) -> float | None:
    """The mean of (value, weight) pairs, finite whenever the values are; None when there
    is none (no positive weight, or a value that is not a finite number).

    `sum(w * v) / sum(w)` overflows for large values (2 * 1e308 is inf), and a status
    holding inf is refused by the API server (JSON has no inf). The weights are scaled
    to sum to 1 first, so every partial sum stays within the values' range.
    """
    kept = [(float(v), float(w)) for v, w in pairs if w > 0]
    if not kept or not all(math.isfinite(v) and math.isfinite(w) for v, w in kept):
        return None
    top = max(w for _, w in kept)
    scaled = [(v, w / top) for v, w in kept]  # each in (0, 1]: their sum cannot overflow
    total = sum(w for _, w in scaled)
    mean = sum(v * (w / total) for v, w in scaled)
    # Rounding can still carry a mean of values at the float limit past it: no score
    # then, rather than one the API server refuses.
    return mean if math.isfinite(mean) else None


def bounded(message: str, limit: int = statustypes.MAX_MESSAGE) -> str:
    """A message cut to `limit` characters, keeping its end (a log tail ends there)."""
    if len(message) <= limit:
        return message
    return message[: limit // 2 - 3] + " … " + message[-(limit // 2 - 3) :]


def refused_record(new: Record, words: str, now: str) -> Record:
    """What is written instead of a record the API server refused for good (a 400, 403,
    413, 422): the run Failed, saying why, without what may have been refused (metrics,
    score, progress, the message). A run whose record cannot be written can never show
    its result; failing it ends its chain's wait instead of wedging it."""
    return Record(
        state=RunState.FAILED,
        job=new.job,
        attempts=new.attempts,
        start_time=new.start_time,
        completion_time=new.completion_time or now,
        message=bounded(
            f"{REFUSED_RECORD}: {words}; rerun it with the annotation "
            f"{constants.ANNOTATION_RERUN}=failed"
        ),
    )


def from_status(status: Mapping[str, Any] | None) -> Record:
    status = status or {}
    metrics = tuple(
        (str(m.get("name", "")), float(m.get("value", 0.0))) for m in status.get("metrics") or []
    )
    return Record(
        state=RunState(status.get("state") or RunState.PENDING),
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
    evaltask: Owner,
    name: str,
    model: str,
    task: str,
    fingerprint: str,
    resolved: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`resolved`: of a task with a configRef, its spec's configRef, entryFingerprint and
    taskConfig (the task as resolved now, which the run keeps)."""
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.EVALRUN.kind,
        "metadata": {
            "name": name,
            "namespace": evaltask.namespace,
            "labels": naming.run_labels(evaltask.name, evaltask.uid, model, task, fingerprint),
            "ownerReferences": [evaltask.reference()],
        },
        "spec": {"model": model, "task": task, "fingerprint": fingerprint, **(resolved or {})},
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


def controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference that controls `obj`, of any kind."""
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


Claim = Literal["ours", "leftover", "foreign"]


def claim(obj: Mapping[str, Any], owner: Owner, evaltask: str) -> Claim:
    """Whose an object is that holds the name we were to create (a create's 409).

    ours: `owner` controls it (an earlier pass made it; the watch has not shown it yet).
    leftover: made by this operator for an EvalTask of this name, and controlled by no one
    or by a former `owner` of the same name (that owner is gone: the name is ours now); as
    after `kubectl delete --cascade=orphan` and a new apply.
    foreign: anything else, someone else's object.
    """
    ref = controller(obj)
    if ref is not None and ref.get("kind") == owner.kind and ref.get("uid") == owner.uid:
        return "ours"
    labels = obj["metadata"].get("labels") or {}
    made_here = labels.get(constants.LABEL_MANAGED_BY) == constants.MANAGED_BY and labels.get(
        constants.LABEL_EVALTASK
    ) == naming.evaltask_label(evaltask)
    if made_here and (
        ref is None or (ref.get("kind") == owner.kind and ref.get("name") == owner.name)
    ):
        return "leftover"
    return "foreign"


def holder(obj: Mapping[str, Any]) -> str:
    """Who an object is, in a message: what controls it, who made it."""
    ref = controller(obj)
    labels = obj["metadata"].get("labels") or {}
    made_by = labels.get(constants.LABEL_MANAGED_BY)
    parts = [
        f"controlled by {ref.get('kind')} {ref.get('name')!r}" if ref else "controlled by no one",
        f"made by {made_by}" if made_by else "not made by eval-operator",
    ]
    if made_by == constants.MANAGED_BY and labels.get(constants.LABEL_EVALTASK):
        parts[-1] += f" for EvalTask {labels[constants.LABEL_EVALTASK]!r}"
    return bounded(", ".join(str(p) for p in parts), 300)


def by_name(objects: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(o["metadata"]["name"]): o for o in objects}
