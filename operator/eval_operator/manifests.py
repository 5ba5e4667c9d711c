"""Build the Jobs and Secrets the operator creates, as plain dicts (no API calls here).

Pod layout: the init container `probe` (the runner image) stamps the output folder and
waits until the model answers; the init container `task` runs the evaluation; then the
collector (`python -m eval_runner collect`, the runner image) reads the results from the
shared output volume and returns them in its termination message. The operator therefore
never mounts user volumes and never sends a request to a model url.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Final

from eval_operator import constants, naming, records, spec

Owner = records.Owner
COLLECTOR_RESOURCES: Final = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"memory": "128Mi"},
}
PROBE_RESOURCES: Final = COLLECTOR_RESOURCES


def _model_env(
    owner: Owner, evalspec: spec.EvalTaskSpec, model: spec.ModelService
) -> list[dict[str, Any]]:
    """Where the model is and how to authenticate: shared by the probe and the task."""
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
    if model.tls is not None:
        env += [{"name": n, "value": constants.CA_FILE} for n in constants.CA_FILE_ENV]
    return env


def _ca_mounts(model: spec.ModelService) -> list[dict[str, Any]]:
    if model.tls is None:
        return []
    return [{"name": constants.CA_VOLUME, "mountPath": constants.CA_DIR, "readOnly": True}]


def _ca_volumes(model: spec.ModelService) -> list[dict[str, Any]]:
    if model.tls is None:
        return []
    ref = model.tls.ca_config_map
    item = {"key": ref.key, "path": constants.CA_FILE.rsplit("/", 1)[1]}
    return [{"name": constants.CA_VOLUME, "configMap": {"name": ref.name, "items": [item]}}]


def injected_env(
    owner: Owner, evalspec: spec.EvalTaskSpec, model: spec.ModelService, task: spec.TaskConfig
) -> list[dict[str, Any]]:
    """The EVAL_* variables, the parameters, then the task's own env (API.md)."""
    env = _model_env(owner, evalspec, model)
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


def template_hash(evalspec: spec.EvalTaskSpec) -> str:
    """Hash of the pod settings that are not part of the fingerprint: a Job that has not
    started yet is replaced when they change (a fix of a bad service account, say)."""
    doc = evalspec.template.model_dump(by_alias=True, exclude_none=True)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def task_timeout(task: spec.TaskConfig, default_timeout: int) -> int:
    return task.timeout_seconds if task.timeout_seconds is not None else default_timeout


def build_job(
    owner: Owner,
    run_owner: Owner,
    evalspec: spec.EvalTaskSpec,
    model: spec.ModelService,
    task: spec.TaskConfig,
    runner_image: str,
    default_timeout: int = constants.DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The Job of one run: owned by its EvalRun `run_owner`, labelled for the EvalTask."""
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
            *_ca_mounts(model),
        ],
        # Not FallbackToLogsOnError: the pod object would hold the log's end, a token the
        # task printed included. The operator reads that from pods/log and redacts it.
        "terminationMessagePolicy": "File",
    }
    if task.command is not None:
        task_container["command"] = list(task.command)
    if task.args is not None:
        task_container["args"] = list(task.args)
    if task.resources is not None:
        task_container["resources"] = task.resources.model_dump(exclude_defaults=True)
    probe = {
        "name": constants.PROBE_CONTAINER,
        "image": runner_image,
        "command": ["python", "-m", "eval_runner", "probe"],
        "env": [
            *_model_env(owner, evalspec, model),
            {"name": "EVAL_PROBE", "value": "true" if evalspec.probe else "false"},
            {
                "name": "EVAL_PROBE_TIMEOUT_SECONDS",
                "value": str(evalspec.probe_timeout_seconds),
            },
            {"name": "EVAL_RUN_DIR", "value": constants.RUN_DIR},
        ],
        "volumeMounts": [
            {"name": constants.RUN_VOLUME, "mountPath": constants.RUN_DIR},
            *_ca_mounts(model),
        ],
        "resources": PROBE_RESOURCES,
        "terminationMessagePolicy": "File",
    }
    collector = {
        "name": constants.COLLECTOR_CONTAINER,
        "image": runner_image,
        "command": ["python", "-m", "eval_runner", "collect"],
        "env": [
            {"name": constants.ENV_OUTPUT_DIR, "value": evalspec.output.mount_path},
            {"name": "EVAL_RUN_DIR", "value": constants.RUN_DIR},
            *(
                [
                    {"name": "EVAL_RESULTS_FORMAT", "value": task.results.format},
                    {"name": "EVAL_RESULTS_PATH", "value": task.results.path},
                ]
                if task.results is not None
                else []
            ),
        ],
        "volumeMounts": [
            _output_mount(owner, evalspec, model.name, task.name, read_only=True),
            {"name": constants.RUN_VOLUME, "mountPath": constants.RUN_DIR, "readOnly": True},
        ],
        "resources": COLLECTOR_RESOURCES,
        "terminationMessagePolicy": "File",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "initContainers": [probe, task_container],
        "containers": [collector],
        "volumes": [
            _output_volume(evalspec),
            {"name": constants.RUN_VOLUME, "emptyDir": {}},
            *({"name": m.name, **m.source.as_volume()} for m in task.mounts),
            *_ca_volumes(model),
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
    deadline = task_timeout(task, default_timeout)
    if evalspec.probe:
        deadline += evalspec.probe_timeout_seconds
    job_spec: dict[str, Any] = {
        "backoffLimit": task.retries,
        "completions": 1,
        "parallelism": 1,
        "activeDeadlineSeconds": deadline,
        # Disruptions (eviction, preemption, drain) are not the task's failures, and a
        # replacement pod starts only once the old one is gone: two pods never write the
        # same output subPath at once.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                }
            ]
        },
        "podReplacementPolicy": "Failed",
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
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {
                **template.annotations,
                constants.ANNOTATION_TEMPLATE_HASH: template_hash(evalspec),
            },
            "ownerReferences": [run_owner.reference()],
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
