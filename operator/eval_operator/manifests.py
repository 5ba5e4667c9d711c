"""Build the objects the operator creates, as plain dicts (no API calls here).

Pod layout: the task runs as the init container `task`, so it finishes before the
collector (`python -m eval_runner collect`, the runner image) reads metrics.json from the
shared output volume and returns the result in its termination message. The operator
therefore never mounts user volumes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

from eval_operator import constants, naming, spec

COLLECTOR_RESOURCES: Final = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"memory": "128Mi"},
}


@dataclass(frozen=True)
class Owner:
    """The EvalTask that owns what we build: deletion cascades through it."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def injected_env(
    owner: Owner, evalspec: spec.EvalTaskSpec, model: spec.ModelService, task: spec.TaskConfig
) -> list[dict[str, Any]]:
    """The EVAL_* variables, the parameters, then the task's own env (API.md)."""
    header_key = model.auth.header_key if model.auth else constants.DEFAULT_HEADER_KEY
    env: list[dict[str, Any]] = [
        {"name": constants.ENV_OUTPUT_DIR, "value": evalspec.output.mount_path},
        {"name": constants.ENV_INFERENCE_URL, "value": model.url},
        {"name": constants.ENV_AUTH_HEADER_KEY, "value": header_key},
    ]
    if model.auth is not None:
        env.append(
            {
                "name": constants.ENV_AUTH_HEADER_VALUE,
                "valueFrom": {
                    "secretKeyRef": (
                        model.auth.secret_ref.model_dump()
                        if model.auth.secret_ref
                        else {"name": naming.auth_secret_name(owner.name), "key": model.name}
                    )
                },
            }
        )
    env += [
        {"name": constants.ENV_MODEL_NAME, "value": model.name},
        {"name": constants.ENV_TASK_NAME, "value": task.name},
    ]
    parameters = naming.effective_parameters(evalspec, model)
    env += [{"name": k, "value": v} for k, v in parameters.items()]
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in task.env]
    return env


def _output_volume(evalspec: spec.EvalTaskSpec) -> dict[str, Any]:
    claim = evalspec.output.persistent_volume_claim
    if claim is None:
        return {"name": constants.OUTPUT_VOLUME, "emptyDir": {}}
    return {
        "name": constants.OUTPUT_VOLUME,
        "persistentVolumeClaim": {"claimName": claim.claim_name},
    }


def _output_mount(
    owner: Owner, evalspec: spec.EvalTaskSpec, model: str, task: str, read_only: bool
) -> dict[str, Any]:
    mount: dict[str, Any] = {
        "name": constants.OUTPUT_VOLUME,
        "mountPath": evalspec.output.mount_path,
    }
    if evalspec.output.persistent_volume_claim is not None:
        mount["subPath"] = f"{owner.name}/{model}/{task}"
    if read_only:
        mount["readOnly"] = True
    return mount


def _user_mount(mount: spec.Mount) -> dict[str, Any]:
    out: dict[str, Any] = {"name": mount.name, "mountPath": mount.mount_path}
    if mount.sub_path:
        out["subPath"] = mount.sub_path
    if mount.read_only:
        out["readOnly"] = True
    return out


def build_job(
    owner: Owner,
    evalspec: spec.EvalTaskSpec,
    model: spec.ModelService,
    task: spec.TaskConfig,
    runner_image: str,
) -> dict[str, Any]:
    fp = naming.fingerprint(evalspec, model, task)
    name = naming.job_name(owner.name, model.name, task.name, fp)
    template = evalspec.template
    labels = {
        **template.labels,
        **naming.run_labels(owner.name, owner.uid, model.name, task.name, fp),
    }
    task_container: dict[str, Any] = {
        "name": constants.TASK_CONTAINER,
        "image": task.image_ref,
        "env": injected_env(owner, evalspec, model, task),
        "volumeMounts": [
            _output_mount(owner, evalspec, model.name, task.name, read_only=False),
            *(_user_mount(m) for m in task.mounts),
        ],
        # The log tail becomes the run's message when the task fails without one.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if task.command is not None:
        task_container["command"] = list(task.command)
    if task.args is not None:
        task_container["args"] = list(task.args)
    if task.resources is not None:
        task_container["resources"] = task.resources.model_dump(exclude_defaults=True)
    collector = {
        "name": constants.COLLECTOR_CONTAINER,
        "image": runner_image,
        "command": ["python", "-m", "eval_runner", "collect"],
        "env": [{"name": constants.ENV_OUTPUT_DIR, "value": evalspec.output.mount_path}],
        "volumeMounts": [_output_mount(owner, evalspec, model.name, task.name, read_only=True)],
        "resources": COLLECTOR_RESOURCES,
        "terminationMessagePolicy": "File",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "initContainers": [task_container],
        "containers": [collector],
        "volumes": [
            _output_volume(evalspec),
            *({"name": m.name, **m.source.as_volume()} for m in task.mounts),
        ],
    }
    optional = {
        "serviceAccountName": template.service_account_name,
        "nodeSelector": template.node_selector,
        "tolerations": template.tolerations,
        "imagePullSecrets": template.image_pull_secrets,
        "priorityClassName": template.priority_class_name,
        "securityContext": template.security_context,
    }
    pod_spec.update({k: v for k, v in optional.items() if v})
    job_spec: dict[str, Any] = {
        "backoffLimit": task.retries,
        "completions": 1,
        "parallelism": 1,
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    **template.annotations,
                    constants.ANNOTATION_DEFAULT_CONTAINER: constants.TASK_CONTAINER,
                },
            },
            "spec": pod_spec,
        },
    }
    if task.timeout_seconds is not None:
        job_spec["activeDeadlineSeconds"] = task.timeout_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": dict(template.annotations),
            "ownerReferences": [owner.reference()],
        },
        "spec": job_spec,
    }


def literal_auth_values(evalspec: spec.EvalTaskSpec) -> dict[str, str]:
    """model name -> literal auth value, for the models that give one inline."""
    return {
        m.name: m.auth.value
        for m in evalspec.models
        if m.auth is not None and m.auth.value is not None
    }


def build_auth_secret(owner: Owner, values: dict[str, str]) -> dict[str, Any]:
    """The Secret that holds literal auth values, one key per model, owned by the EvalTask."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": naming.auth_secret_name(owner.name),
            "namespace": owner.namespace,
            "labels": naming.labels(owner.name, owner.uid),
            "ownerReferences": [owner.reference()],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(values.items())},
    }
