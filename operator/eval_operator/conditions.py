"""Condition types and reasons, and the rule that lastTransitionTime moves only on a flip."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from eval_operator.statustypes import MAX_MESSAGE

SPEC_VALID: Final = "SpecValid"
PROGRESSING: Final = "Progressing"
COMPLETE: Final = "Complete"
MODEL_REACHABLE: Final = "ModelReachable"
# False while the runs still to start wait for the cluster to change (a referenced Secret
# or ConfigMap to be created, admission to accept their Jobs): the reason says for what
# (SecretNotFound, JobRefused, ...). Its lastTransitionTime is when that wait began (a
# wait for something else is a new wait): the backoff of the rechecks and the start
# timeout of a refused Job count from it. Set once a wait happened, kept (True) after.
READY_TO_START: Final = "ReadyToStart"
# Whether the API server took every record and the status this operator wrote: False
# names what it refused for good (a 400, 403, 413 or 422), which no retry can fix. Set once
# a refusal happened, kept (True) after.
RECORDS_WRITTEN: Final = "RecordsWritten"

# Reasons (CamelCase, also used on Events).
SPEC_ACCEPTED: Final = "SpecAccepted"
SECRET_NOT_FOUND: Final = "SecretNotFound"
SECRET_KEY_NOT_FOUND: Final = "SecretKeyNotFound"
CONFIGMAP_NOT_FOUND: Final = "ConfigMapNotFound"
CONFIGMAP_KEY_NOT_FOUND: Final = "ConfigMapKeyNotFound"
# A tasks[] entry's configRef names a saved task configuration that does not exist (or
# whose spec is no valid task).
CONFIG_NOT_FOUND: Final = "TaskConfigNotFound"
JOB_REJECTED: Final = "JobRejected"
# Admission (a quota, a webhook, a policy, RBAC) refuses the Jobs for now: a wait, which
# fails the runs only after the start timeout. JobRejected (a 422, a Job too large) is
# the spec's, and only an edit fixes it.
JOB_REFUSED: Final = "JobRefused"
NOTHING_BLOCKS: Final = "NothingBlocks"
RUNS_IN_PROGRESS: Final = "RunsInProgress"
RUNS_WAITING: Final = "RunsWaiting"
SUSPENDED: Final = "Suspended"
SPEC_INVALID: Final = "SpecInvalid"
ALL_RUNS_FINISHED: Final = "AllRunsFinished"
ALL_RUNS_SUCCEEDED: Final = "AllRunsSucceeded"
RUNS_FAILED: Final = "RunsFailed"
RUNS_REMAINING: Final = "RunsRemaining"
MODEL_UNREACHABLE: Final = "ModelUnreachable"
MODELS_ANSWER: Final = "ModelsAnswer"
RECORDS_ACCEPTED: Final = "RecordsAccepted"
RECORD_WRITE_REFUSED: Final = "RecordWriteRefused"
STATUS_WRITE_REFUSED: Final = "StatusWriteRefused"
# Progressing=False when a whole pass failed (a refusal other than a record's, or an error
# of the operator's own): a later pass that gets through sets Progressing again.
RECONCILE_FAILED: Final = "ReconcileFailed"
# Event-only reasons.
LITERAL_AUTH_VALUE: Final = "LiteralAuthValue"
RUN_FAILED: Final = "RunFailed"
RUN_SUCCEEDED: Final = "RunSucceeded"
UNKNOWN_RERUN: Final = "UnknownRerunValue"
AUTH_SECRET_NOT_OWNED: Final = "AuthSecretNotOwned"
AUTH_SECRET_REFUSED: Final = "AuthSecretRefused"


def set_condition(
    existing: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Return the conditions with `type_` set; the transition time changes only on a flip.

    `status` None: Unknown (not decided yet)."""
    value = "Unknown" if status is None else "True" if status else "False"
    if len(message) > MAX_MESSAGE:  # conditions stay bounded, whatever they list
        message = message[: MAX_MESSAGE - 3] + "..."
    previous = next((c for c in existing if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != value
    since = now if previous is None or changed else previous.get("lastTransitionTime", now)
    condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
    if previous is None:
        return [*(dict(c) for c in existing), condition]
    return [condition if c.get("type") == type_ else dict(c) for c in existing]


def get(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)
