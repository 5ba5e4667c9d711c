"""The Job manifest: pod layout, injected environment, volumes, labels, ownership."""

from __future__ import annotations

import copy

import pytest

from eval_operator import constants, manifests, naming, spec

OWNER = manifests.Owner("bfcl", "evals", "uid-1")
BASE = {
    "models": [
        {
            "name": "ds",
            "url": "https://api.example.com/v1/chat/completions",
            "auth": {"secretRef": {"name": "ds-key", "key": "token"}},
            "parameters": {"temperature": "0", "MAX_CONCURRENCY": "8"},
        }
    ],
    "tasks": [
        {
            "name": "simple",
            "image": "registry.example.com/evals/bfcl",
            "version": "v1",
            "command": ["bash", "-c"],
            "args": ["bash run.sh"],
            "env": [{"name": "MODEL_NAME", "value": "deepseek"}],
            "mounts": [
                {
                    "name": "data",
                    "mountPath": "/data",
                    "subPath": "bfcl",
                    "readOnly": True,
                    "source": {"persistentVolumeClaim": {"claimName": "sets"}},
                }
            ],
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
            "timeoutSeconds": 3600,
            "retries": 2,
        }
    ],
    "parameters": {"MAX_RETRY_PER_QUERY": "3"},
    "template": {
        "labels": {"kueue.x-k8s.io/queue-name": "evals"},
        "annotations": {"team": "a"},
        "serviceAccountName": "eval-runner",
        "nodeSelector": {"pool": "cpu"},
    },
}


def build(doc=None):
    s = spec.parse_spec(doc or BASE)
    return manifests.build_job(OWNER, s, s.models[0], s.tasks[0], "runner:1")


def env_of(job):
    return job["spec"]["template"]["spec"]["initContainers"][0]["env"]


def test_the_task_runs_first_then_the_collector():
    pod = build()["spec"]["template"]["spec"]
    [task] = pod["initContainers"]
    [collector] = pod["containers"]
    assert task["name"] == "task"
    assert task["image"] == "registry.example.com/evals/bfcl:v1"
    assert (task["command"], task["args"]) == (["bash", "-c"], ["bash run.sh"])
    assert task["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert task["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}}
    assert collector["image"] == "runner:1"
    assert collector["command"] == ["python", "-m", "eval_runner", "collect"]
    assert pod["restartPolicy"] == "Never"


def test_the_task_is_the_default_container_for_logs():
    annotations = build()["spec"]["template"]["metadata"]["annotations"]
    assert annotations[constants.ANNOTATION_DEFAULT_CONTAINER] == "task"
    assert annotations["team"] == "a"


def test_injected_environment_in_order():
    env = env_of(build())
    assert [e["name"] for e in env] == [
        "EVAL_OUTPUT_DIR",
        "EVAL_INFERENCE_URL",
        "EVAL_AUTHORIZATION_HEADER_KEY",
        "EVAL_AUTHORIZATION_HEADER_VALUE",
        "EVAL_MODEL_NAME",
        "EVAL_TASK_NAME",
        "MAX_CONCURRENCY",
        "MAX_RETRY_PER_QUERY",
        "temperature",
        "MODEL_NAME",
    ]
    values = {e["name"]: e.get("value") for e in env}
    assert values["EVAL_OUTPUT_DIR"] == "/opt/ml/output"
    assert values["EVAL_INFERENCE_URL"] == "https://api.example.com/v1/chat/completions"
    assert values["EVAL_AUTHORIZATION_HEADER_KEY"] == "Authorization"
    assert (values["EVAL_MODEL_NAME"], values["EVAL_TASK_NAME"]) == ("ds", "simple")
    assert values["MAX_CONCURRENCY"] == "8", "the model's parameters win"
    assert values["MAX_RETRY_PER_QUERY"] == "3", "spec.parameters beat the defaults"
    secret = next(e for e in env if e["name"] == "EVAL_AUTHORIZATION_HEADER_VALUE")
    assert secret == {
        "name": "EVAL_AUTHORIZATION_HEADER_VALUE",
        "valueFrom": {"secretKeyRef": {"name": "ds-key", "key": "token"}},
    }


def test_defaults_are_injected_when_absent_and_no_auth_means_no_header_value():
    doc = copy.deepcopy(BASE)
    doc["models"][0].pop("auth")
    doc["models"][0].pop("parameters")
    doc.pop("parameters")
    values = {e["name"]: e.get("value") for e in env_of(build(doc))}
    assert values["MAX_CONCURRENCY"] == "24" and values["MAX_RETRY_PER_QUERY"] == "0"
    assert "EVAL_AUTHORIZATION_HEADER_VALUE" not in values
    assert values["EVAL_AUTHORIZATION_HEADER_KEY"] == "Authorization"


def test_literal_auth_references_the_owned_secret():
    doc = copy.deepcopy(BASE)
    doc["models"][0]["auth"] = {"value": "Bearer sk-1", "headerKey": "X-Key"}
    job = build(doc)
    assert "sk-1" not in repr(job)
    env = {e["name"]: e for e in env_of(job)}
    assert env["EVAL_AUTHORIZATION_HEADER_KEY"]["value"] == "X-Key"
    assert env["EVAL_AUTHORIZATION_HEADER_VALUE"]["valueFrom"]["secretKeyRef"] == {
        "name": naming.auth_secret_name("bfcl"),
        "key": "ds",
    }
    s = spec.parse_spec(doc)
    secret = manifests.build_auth_secret(OWNER, manifests.literal_auth_values(s))
    assert secret["metadata"]["name"] == naming.auth_secret_name("bfcl")
    assert secret["data"] == {"ds": "QmVhcmVyIHNrLTE="}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_volumes_emptydir_output_and_user_mounts():
    pod = build()["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "eval-output", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "sets"}},
    ]
    assert pod["initContainers"][0]["volumeMounts"] == [
        {"name": "eval-output", "mountPath": "/opt/ml/output"},
        {"name": "data", "mountPath": "/data", "subPath": "bfcl", "readOnly": True},
    ]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "eval-output", "mountPath": "/opt/ml/output", "readOnly": True}
    ]


def test_a_pvc_output_gets_a_subpath_per_run():
    doc = copy.deepcopy(BASE)
    doc["output"] = {"mountPath": "/results", "persistentVolumeClaim": {"claimName": "out"}}
    pod = build(doc)["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {
        "name": "eval-output",
        "persistentVolumeClaim": {"claimName": "out"},
    }
    for container in (pod["initContainers"][0], pod["containers"][0]):
        assert container["volumeMounts"][0]["subPath"] == "bfcl/ds/simple"
        assert container["volumeMounts"][0]["mountPath"] == "/results"


def test_job_settings_labels_and_owner():
    job = build()
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "evals"
    assert labels[constants.LABEL_MODEL] == "ds" and labels[constants.LABEL_TASK] == "simple"
    assert labels[constants.LABEL_EVALTASK_UID] == "uid-1"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "EvalTask",
        "bfcl",
        "uid-1",
        True,
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "eval-runner"
    assert pod["nodeSelector"] == {"pool": "cpu"}


@pytest.mark.parametrize(
    "key", ["tolerations", "imagePullSecrets", "priorityClassName", "securityContext"]
)
def test_unset_template_fields_are_left_out(key):
    assert key not in build()["spec"]["template"]["spec"]
