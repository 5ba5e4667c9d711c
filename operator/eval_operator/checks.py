"""What only the operator can check about a spec, through the API.

The CRD's schema and CEL rules catch what a schema can say. These checks need the
cluster: referenced Secrets and ConfigMaps must exist, and the API server must accept
the Jobs the operator would create (a server-side dry-run, whose complaints are mapped
back to the EvalTask field a user edits).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Set
from concurrent.futures import Executor
from functools import partial
from typing import Any, Final

from eval_operator import conditions, constants, kube, manifests, parallel, records, spec


def check_references(
    api: kube.Api, namespace: str, evalspec: spec.EvalTaskSpec
) -> tuple[list[spec.SpecProblem], list[str]]:
    """Referenced Secrets and ConfigMaps (and their keys) must exist; optional ones may not.

    Returns the problems, and the values of the Secrets the runs read (auth, env, mounts),
    so that what the operator writes can be redacted of them.
    """
    problems: list[spec.SpecProblem] = []
    secret_values: list[str] = []
    cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def read(kind: str, name: str) -> dict[str, Any] | None:
        if (kind, name) not in cache:
            reader = api.read_secret if kind == "Secret" else api.read_configmap
            try:
                cache[(kind, name)] = reader(namespace, name)
            except kube.NotFound:
                cache[(kind, name)] = None
        return cache[(kind, name)]

    def need(where: str, kind: str, name: str, key: str | None) -> dict[str, Any] | None:
        obj = read(kind, name)
        missing, key_missing = (
            (conditions.SECRET_NOT_FOUND, conditions.SECRET_KEY_NOT_FOUND)
            if kind == "Secret"
            else (conditions.CONFIGMAP_NOT_FOUND, conditions.CONFIGMAP_KEY_NOT_FOUND)
        )
        if obj is None:
            problems.append(
                spec.SpecProblem(
                    where, missing, f"{kind} {name!r} not found in namespace {namespace!r}"
                )
            )
            return None
        keys = set(obj.get("data") or {}) | set(obj.get("binaryData") or {})
        if key is not None and key not in keys:
            problems.append(
                spec.SpecProblem(where, key_missing, f"{kind} {name!r} has no key {key!r}")
            )
            return None
        return obj

    for mi, model in enumerate(evalspec.models):
        ref = model.auth.secret_ref if model.auth else None
        if ref is not None:
            secret = need(f"spec.models[{mi}].auth.secretRef", "Secret", ref.name, ref.key)
            if secret is not None:
                secret_values.append(_decode(secret["data"][ref.key]))
        if model.tls is not None:
            ca = model.tls.ca_config_map
            need(f"spec.models[{mi}].tls.caConfigMap", "ConfigMap", ca.name, ca.key)
    for ti, task in enumerate(evalspec.tasks):
        for ei, env in enumerate(task.env):
            source = env.value_from or {}
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref_doc = source.get(key)
                if not isinstance(ref_doc, dict):
                    continue
                where = f"spec.tasks[{ti}].env[{ei}].valueFrom.{key}"
                name, ref_key = str(ref_doc.get("name", "")), str(ref_doc.get("key", ""))
                if ref_doc.get("optional"):
                    found = read(kind, name)
                else:
                    found = need(where, kind, name, ref_key)
                if kind == "Secret" and found is not None and ref_key in (found.get("data") or {}):
                    # Any secret a task reads is redacted from what we write, not only auth.
                    secret_values.append(_decode(found["data"][ref_key]))
        for mi, mount in enumerate(task.mounts):
            src = mount.source
            if src.secret and not src.secret.get("optional"):
                mounted = need(
                    f"spec.tasks[{ti}].mounts[{mi}].source.secret",
                    "Secret",
                    str(src.secret.get("secretName", "")),
                    None,
                )
                # A mounted Secret's every value may be printed by the task, too.
                for data in ((mounted or {}).get("data") or {}).values():
                    secret_values.append(_decode(data))
            if src.config_map and not src.config_map.get("optional"):
                need(
                    f"spec.tasks[{ti}].mounts[{mi}].source.configMap",
                    "ConfigMap",
                    str(src.config_map.get("name", "")),
                    None,
                )
    return problems, secret_values


def _decode(data: str) -> str:
    try:
        return base64.b64decode(data).decode("utf-8", errors="replace")
    except ValueError:
        return ""


_POD_TEMPLATE_FIELDS: Final = {
    "tolerations": "tolerations",
    "nodeSelector": "nodeSelector",
    "securityContext": "securityContext",
    "imagePullSecrets": "imagePullSecrets",
    "priorityClassName": "priorityClassName",
    "serviceAccountName": "serviceAccountName",
}


def spec_field_for(job_field: str, model_index: int, task_index: int) -> str:
    """Translate a rejected Job field into the EvalTask field a user edits."""
    pod = "spec.template.spec."
    if job_field.startswith(pod):
        rest = job_field[len(pod) :]
        # The pod's volumes start with the output and the run folder; the task's
        # (initContainers[1]) mounts with the output: then come the task's own mounts.
        volume = re.match(r"volumes\[(\d+)\]", rest)
        if volume and int(volume.group(1)) >= 2:
            return f"spec.tasks[{task_index}].mounts[{int(volume.group(1)) - 2}]"
        mount = re.match(r"initContainers\[1\]\.volumeMounts\[(\d+)\]", rest)
        if mount and int(mount.group(1)) >= 1:
            return f"spec.tasks[{task_index}].mounts[{int(mount.group(1)) - 1}]"
        for key, target in _POD_TEMPLATE_FIELDS.items():
            if rest.startswith(key):
                return f"spec.template.{target}"
        match = re.match(r"initContainers\[1\]\.(image|resources|command|args|env)", rest)
        if match:
            if match.group(1) == "env":
                return f"spec.tasks[{task_index}].env (or spec.models[{model_index}])"
            name = "version" if match.group(1) == "image" else match.group(1)
            return f"spec.tasks[{task_index}].{name}"
    if job_field.startswith("metadata.labels") or job_field.startswith(
        "spec.template.metadata.labels"
    ):
        return "spec.template.labels"
    if "annotations" in job_field:
        return "spec.template.annotations"
    return f"spec.tasks[{task_index}]"


def permanent(e: kube.Refused) -> bool:
    """Whether a refused Job waits in vain: it is invalid (a 422, which names the field)
    or too large (a 413). Any other refusal (a quota, a webhook, a policy, RBAC) the
    cluster may yet lift."""
    return isinstance(e, kube.Invalid) or e.status == 413


def dry_run(
    api: kube.Api,
    owner: records.Owner,
    evalspec: spec.EvalTaskSpec,
    runner_image: str,
    default_timeout: int,
    pool: Executor | None = None,
) -> list[spec.SpecProblem]:
    """Ask the API server whether it would accept our Jobs (server-side dry-run).

    Problems with reason JobRejected are the spec's (a 422 names the field, a 413 the
    size); JobRefused means admission refuses the Jobs for now (a quota, a webhook),
    which the cluster may yet change.

    Pair i is model i mod M with task i mod T: every model and every task is in some
    Job, so every part of every Job is checked with max(M, T) requests, not M x T (a
    Job's model parts and task parts are separate fields). Made at once on `pool`.
    """
    models, tasks = evalspec.models, evalspec.tasks
    pairs = [(i % len(models), i % len(tasks)) for i in range(max(len(models), len(tasks)))]
    # The EvalRun does not exist yet; a dry-run never checks that an owner exists.
    placeholder = records.Owner(constants.EVALRUN.kind, owner.name, owner.namespace, owner.uid)

    def one(mi: int, ti: int) -> tuple[list[spec.SpecProblem], bool]:
        """The problems of one Job, and whether admission refused it."""
        model, task = models[mi], tasks[ti]
        job = manifests.build_job(
            owner, placeholder, evalspec, model, task, runner_image, default_timeout
        )
        try:
            api.create_job(job, dry_run=True)
        except kube.Conflict:
            return [], False  # the Job exists already, so it was accepted
        except kube.Invalid as e:
            causes = e.causes or [{"field": "", "message": e.message}]
            invalid = [
                spec.SpecProblem(
                    spec_field_for(cause["field"], mi, ti),
                    conditions.JOB_REJECTED,
                    f"the API server rejects the Job for model {model.name!r}, task "
                    f"{task.name!r}: {cause['field']}: {cause['message']}".replace(": : ", ": "),
                )
                for cause in causes
            ]
            return invalid, False
        except kube.Refused as e:
            # Admission (a quota, a policy, a webhook) said no: for now, a wait (JobRefused).
            # A size limit is the spec's: no wait makes the Job smaller.
            refusal = spec.SpecProblem(
                f"spec.tasks[{ti}]",
                conditions.JOB_REJECTED if permanent(e) else conditions.JOB_REFUSED,
                f"the API server refuses the Job for model {model.name!r}, task "
                f"{task.name!r}: {e.status} {e.reason}: {e.message}",
            )
            return [refusal], True
        return [], False

    problems: list[spec.SpecProblem] = []
    for found, refused in parallel.each(pool, [partial(one, mi, ti) for mi, ti in pairs]):
        problems += found
        if refused:
            break  # one refusal says it: the others would repeat it
    return problems


# A saved task configuration a spec's tasks were resolved from: (kind, name, resourceVersion).
ConfigVersion = tuple[str, str, str]


class DryRunInputs:
    """The generation and the configs' versions each EvalTask's last dry-run was made with
    (by uid, in this process). SpecValid keeps the verdict per generation, but a config
    edit is no new generation: a spec with configRefs keeps its verdict only for the
    versions noted here, so a fixed config is dry-run again (after a restart, once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, tuple[int, frozenset[ConfigVersion]]] = {}

    def current(self, uid: str, generation: int, configs: Set[ConfigVersion]) -> bool:
        """Whether the verdict for `generation` was made with these configs."""
        if not configs:
            return True  # no configRef: the generation is all the input there is
        with self._lock:
            return self._made.get(uid) == (generation, frozenset(configs))

    def note(self, uid: str, generation: int, configs: Set[ConfigVersion]) -> None:
        with self._lock:
            if configs:
                self._made[uid] = (generation, frozenset(configs))
            else:
                self._made.pop(uid, None)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._made.pop(uid, None)


DRY_RUNS: Final = DryRunInputs()
