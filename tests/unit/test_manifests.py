"""The Job manifest: pod layout, injected environment, volumes, labels, ownership."""

from __future__ import annotations

import copy

import pytest

from eval_operator import constants, manifests, naming, spec

OWNER = manifests.Owner("EvalTask", "bfcl", "evals", "uid-1")
RUN_OWNER = manifests.Owner("EvalRun", "bfcl-ds-simple-0123abcd", "evals", "uid-run")
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
    return manifests.build_job(OWNER, RUN_OWNER, s, s.models[0], s.tasks[0], "runner:1", 86400)


def env_of(job):
    return job["spec"]["template"]["spec"]["initContainers"][1]["env"]


def test_the_probe_runs_first_then_the_task_then_the_collector():
    pod = build()["spec"]["template"]["spec"]
    [probe, task] = pod["initContainers"]
    [collector] = pod["containers"]
    assert probe["name"] == "probe"
    assert (probe["image"], probe["command"]) == (
        "runner:1",
        ["python", "-m", "eval_runner", "probe"],
    )
    assert task["name"] == "task"
    assert task["image"] == "registry.example.com/evals/bfcl:v1"
    assert (task["command"], task["args"]) == (["bash", "-c"], ["bash run.sh"])
    # The pod never holds what the task printed: its log tail is read (and redacted).
    assert task["terminationMessagePolicy"] == "File"
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
        {"name": "eval-run", "emptyDir": {}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "sets"}},
    ]
    assert pod["initContainers"][1]["volumeMounts"] == [
        {"name": "eval-output", "mountPath": "/opt/ml/output"},
        {"name": "data", "mountPath": "/data", "subPath": "bfcl", "readOnly": True},
    ]
    assert pod["initContainers"][0]["volumeMounts"] == [
        {"name": "eval-run", "mountPath": "/var/run/eval-run"}
    ], "the probe marks the start in the pod's own folder, never touching the task's mounts"
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "eval-output", "mountPath": "/opt/ml/output", "readOnly": True},
        {"name": "eval-run", "mountPath": "/var/run/eval-run", "readOnly": True},
    ]


def test_a_pvc_output_gets_a_subpath_per_run():
    doc = copy.deepcopy(BASE)
    doc["output"] = {"mountPath": "/results", "persistentVolumeClaim": {"claimName": "out"}}
    pod = build(doc)["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {
        "name": "eval-output",
        "persistentVolumeClaim": {"claimName": "out"},
    }
    for container in (pod["initContainers"][1], pod["containers"][0]):
        assert container["volumeMounts"][0]["subPath"] == "bfcl/ds/simple"
        assert container["volumeMounts"][0]["mountPath"] == "/results"


def test_job_settings_labels_and_owner():
    job = build()
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 3600 + 1800, "timeout plus probe timeout"
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "evals"
    assert labels[constants.LABEL_MODEL] == "ds" and labels[constants.LABEL_TASK] == "simple"
    assert labels[constants.LABEL_EVALTASK_UID] == "uid-1"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "EvalRun",
        "bfcl-ds-simple-0123abcd",
        "uid-run",
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


def test_the_probe_gets_the_models_address_and_auth_but_not_the_tasks_env():
    probe = build()["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e for e in probe["env"]}
    assert env["EVAL_INFERENCE_URL"]["value"] == "https://api.example.com/v1/chat/completions"
    assert env["EVAL_AUTHORIZATION_HEADER_VALUE"]["valueFrom"] == {
        "secretKeyRef": {"name": "ds-key", "key": "token"}
    }
    assert env["EVAL_PROBE"]["value"] == "true"
    assert env["EVAL_PROBE_TIMEOUT_SECONDS"]["value"] == "1800"
    assert "MODEL_NAME" not in env


def test_probe_false_still_stamps_but_does_not_wait_and_adds_no_probe_time():
    doc = copy.deepcopy(BASE)
    doc["probe"] = False
    job = build(doc)
    probe = job["spec"]["template"]["spec"]["initContainers"][0]
    assert {e["name"]: e.get("value") for e in probe["env"]}["EVAL_PROBE"] == "false"
    assert job["spec"]["activeDeadlineSeconds"] == 3600


def test_every_job_has_a_deadline_and_treats_disruptions_as_no_failure():
    doc = copy.deepcopy(BASE)
    del doc["tasks"][0]["timeoutSeconds"]
    job = build(doc)
    assert job["spec"]["activeDeadlineSeconds"] == 86400 + 1800
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"


def test_the_template_hash_changes_with_the_pod_settings_only():
    first = build()["metadata"]["annotations"][constants.ANNOTATION_TEMPLATE_HASH]
    doc = copy.deepcopy(BASE)
    doc["template"]["serviceAccountName"] = "other"
    assert build(doc)["metadata"]["annotations"][constants.ANNOTATION_TEMPLATE_HASH] != first
    doc = copy.deepcopy(BASE)
    doc["tasks"][0]["args"] = ["other"]
    assert build(doc)["metadata"]["annotations"][constants.ANNOTATION_TEMPLATE_HASH] == first


def test_a_private_ca_is_mounted_read_only_into_the_probe_and_the_task_only():
    doc = copy.deepcopy(BASE)
    doc["models"][0]["tls"] = {"caConfigMap": {"name": "model-ca", "key": "root.pem"}}
    pod = build(doc)["spec"]["template"]["spec"]
    [probe, task] = pod["initContainers"]
    [collector] = pod["containers"]
    [volume] = [v for v in pod["volumes"] if v["name"] == constants.CA_VOLUME]
    assert volume["configMap"] == {
        "name": "model-ca",
        "items": [{"key": "root.pem", "path": "ca.crt"}],
    }
    for container in (probe, task):
        [mount] = [m for m in container["volumeMounts"] if m["name"] == constants.CA_VOLUME]
        assert mount == {
            "name": constants.CA_VOLUME,
            "mountPath": constants.CA_DIR,
            "readOnly": True,
        }
        env = {e["name"]: e.get("value") for e in container["env"]}
        for name in ("EVAL_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            assert env[name] == f"{constants.CA_DIR}/ca.crt", (container["name"], name)
    assert all(m["name"] != constants.CA_VOLUME for m in collector["volumeMounts"])
    assert "EVAL_CA_BUNDLE" not in {e["name"] for e in collector["env"]}


def test_without_tls_there_is_no_ca_volume_nor_ca_env():
    pod = build()["spec"]["template"]["spec"]
    assert all(v["name"] != constants.CA_VOLUME for v in pod["volumes"])
    assert "SSL_CERT_FILE" not in {e["name"] for e in env_of(build())}


def test_the_results_format_and_path_reach_the_collector_only():
    doc = copy.deepcopy(BASE)
    doc["tasks"][0]["results"] = {"format": "lm-eval", "path": "lm"}
    pod = build(doc)["spec"]["template"]["spec"]
    [collector] = pod["containers"]
    env = {e["name"]: e["value"] for e in collector["env"]}
    assert (env["EVAL_RESULTS_FORMAT"], env["EVAL_RESULTS_PATH"]) == ("lm-eval", "lm")
    assert "EVAL_RESULTS_FORMAT" not in {e["name"] for e in env_of(build(doc))}
    [plain] = build()["spec"]["template"]["spec"]["containers"]
    assert "EVAL_RESULTS_FORMAT" not in {e["name"] for e in plain["env"]}
