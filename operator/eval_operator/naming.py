"""Deterministic names, labels and the run fingerprint.

A run is (model, task, fingerprint). The fingerprint hashes everything that determines
the run's result, so an edit that changes it gives the run a new Job (a new name), and an
edit that does not leaves the run alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from eval_operator import constants, spec

MAX_NAME: Final = 63
FINGERPRINT_LEN: Final = 16
_HASH_LEN: Final = 8


def _hash(*parts: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def effective_parameters(evalspec: spec.EvalTaskSpec, model: spec.ModelService) -> dict[str, str]:
    """Defaults, then spec.parameters, then the model's parameters."""
    return {**constants.DEFAULT_PARAMETERS, **evalspec.parameters, **model.parameters}


def fingerprint(
    evalspec: spec.EvalTaskSpec, model: spec.ModelService, task: spec.TaskConfig
) -> str:
    """Hash of what determines a run's result (API.md); weight, timeouts and pod settings
    are left out on purpose: changing them must not rerun anything.

    Of a tasks[] entry with a configRef (not resolved yet), the hash of the entry as
    written: its configRef and overrides (plan.desired_runs)."""
    auth: dict[str, Any] | None = None
    if model.auth is not None:
        # The reference, never the secret's value.
        ref = model.auth.secret_ref.model_dump() if model.auth.secret_ref else "inline"
        auth = {"headerKey": model.auth.header_key, "secretRef": ref}
    served: dict[str, Any] = {"name": model.name, "url": model.url, "auth": auth}
    if model.tls is not None:  # only when set: the runs of models without tls keep theirs
        served["tls"] = model.tls.model_dump(by_alias=True)
    identity = {
        "model": served,
        "task": task.model_dump(
            by_alias=True,
            include={
                "config_ref",
                "image",
                "version",
                "command",
                "args",
                "env",
                "mounts",
                "resources",
                "results",
            },
            exclude_none=True,
        ),
        "parameters": effective_parameters(evalspec, model),
        "output": evalspec.output.model_dump(by_alias=True, exclude_none=True),
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_LEN]


def _shorten(name: str, limit: int, *identity: str) -> str:
    """`name` if it fits, else a prefix of it plus a hash of `identity` (still unique)."""
    if len(name) <= limit:
        return name
    suffix = _hash(*identity)
    return name[: limit - len(suffix) - 1].rstrip("-.") + "-" + suffix


def job_name(evaltask: str, model: str, task: str, fp: str) -> str:
    """`<evaltask>-<model>-<task>-<fp8>`, at most 63 characters however long the parts."""
    suffix = "-" + fp[:_HASH_LEN]
    base = _shorten(f"{evaltask}-{model}-{task}", MAX_NAME - len(suffix), evaltask, model, task)
    return base + suffix


def auth_secret_name(evaltask: str) -> str:
    return _shorten(f"{evaltask}-eval-auth", MAX_NAME, evaltask, "auth")


def evaltask_label(evaltask: str) -> str:
    """EvalTask names may be 253 characters; label values only 63."""
    return _shorten(evaltask, MAX_NAME, evaltask)


def labels(evaltask: str, uid: str) -> dict[str, str]:
    return {
        constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
        constants.LABEL_EVALTASK: evaltask_label(evaltask),
        constants.LABEL_EVALTASK_UID: uid,
    }


def run_labels(evaltask: str, uid: str, model: str, task: str, fp: str) -> dict[str, str]:
    return {
        **labels(evaltask, uid),
        constants.LABEL_MODEL: model,
        constants.LABEL_TASK: task,
        constants.LABEL_FINGERPRINT: fp,
    }


def selector(uid: str) -> str:
    """Label selector for everything made for one EvalTask (by uid: names get reused)."""
    return f"{constants.LABEL_EVALTASK_UID}={uid}"
