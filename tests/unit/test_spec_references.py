"""References to objects by name: each a DNS-1123 subdomain, required where the operator
reads the object, in the models and in the generated CRD."""

from __future__ import annotations

import copy

import pytest

from eval_operator import crd, manifests, naming, spec

SECRET_PATH = "../../kube-system/secrets/x"

BASE = {
    "models": [
        {
            "name": "m1",
            "url": "https://api.example.com/v1/chat/completions",
            "auth": {"secretRef": {"name": "model-key", "key": "token"}},
            "tls": {"caConfigMap": {"name": "model-ca", "key": "ca.crt"}},
        }
    ],
    "tasks": [
        {
            "name": "t1",
            "image": "registry.example.com/evals/bfcl",
            "version": "v1",
            "env": [
                {
                    "name": "A",
                    "valueFrom": {
                        "secretKeyRef": {"name": "app.secret", "key": "k", "optional": True}
                    },
                },
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}},
                {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "mounts": [
                {
                    "name": "s",
                    "mountPath": "/s",
                    "source": {
                        "secret": {
                            "secretName": "files",
                            "items": [{"key": "a", "path": "a.txt"}],
                            "defaultMode": 256,
                        }
                    },
                },
                {
                    "name": "c",
                    "mountPath": "/c",
                    "source": {"configMap": {"name": "conf", "optional": True}},
                },
                {
                    "name": "p",
                    "mountPath": "/p",
                    "source": {
                        "persistentVolumeClaim": {"claimName": "eval-sets", "readOnly": True}
                    },
                },
            ],
        }
    ],
    "output": {"persistentVolumeClaim": {"claimName": "eval-results"}},
    "template": {
        "serviceAccountName": "eval-runner",
        "imagePullSecrets": [{"name": "pull"}],
        "priorityClassName": "",
    },
}


def with_(mutate):
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return doc


def task(doc):
    return doc["tasks"][0]


def source(doc, index):
    return task(doc)["mounts"][index]["source"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(
            lambda d: d["models"][0]["auth"]["secretRef"].update(name=SECRET_PATH),
            "spec.models[0].auth.secretRef.name",
            id="an auth secretRef name that is a path is refused",
        ),
        pytest.param(
            lambda d: d["models"][0]["tls"]["caConfigMap"].update(name="Model-CA"),
            "spec.models[0].tls.caConfigMap.name",
            id="a caConfigMap name in upper case is refused",
        ),
        pytest.param(
            lambda d: task(d)["env"][0]["valueFrom"]["secretKeyRef"].update(name=SECRET_PATH),
            "spec.tasks[0].env[0].valueFrom.secretKeyRef.name",
            id="an env secretKeyRef name that is a path is refused",
        ),
        pytest.param(
            lambda d: task(d)["env"][0]["valueFrom"]["secretKeyRef"].pop("name"),
            "spec.tasks[0].env[0].valueFrom.secretKeyRef.name",
            id="an env secretKeyRef without a name is refused",
        ),
        pytest.param(
            lambda d: task(d)["env"][0]["valueFrom"]["secretKeyRef"].pop("key"),
            "spec.tasks[0].env[0].valueFrom.secretKeyRef.key",
            id="an env secretKeyRef without a key is refused",
        ),
        pytest.param(
            lambda d: task(d)["env"][1]["valueFrom"]["configMapKeyRef"].update(name="a/b"),
            "spec.tasks[0].env[1].valueFrom.configMapKeyRef.name",
            id="an env configMapKeyRef name with a slash is refused",
        ),
        pytest.param(
            lambda d: task(d)["env"][1]["valueFrom"]["configMapKeyRef"].update(name=""),
            "spec.tasks[0].env[1].valueFrom.configMapKeyRef.name",
            id="an env configMapKeyRef with an empty name is refused",
        ),
        pytest.param(
            lambda d: source(d, 0).update(secret={}),
            "spec.tasks[0].mounts[0].source.secret.secretName",
            id="a secret mount without a secretName is refused",
        ),
        pytest.param(
            lambda d: source(d, 0).update(secret={"secret_name": "files"}),
            "spec.tasks[0].mounts[0].source.secret.secretName",
            id="a secret mount naming its secret in snake case has no secretName",
        ),
        pytest.param(
            lambda d: source(d, 0)["secret"].update(secretName="x/../y"),
            "spec.tasks[0].mounts[0].source.secret.secretName",
            id="a secret mount whose secretName is a path is refused",
        ),
        pytest.param(
            lambda d: source(d, 1).update(configMap={"optional": True}),
            "spec.tasks[0].mounts[1].source.configMap.name",
            id="a configMap mount without a name is refused",
        ),
        pytest.param(
            lambda d: source(d, 1)["configMap"].update(name="conf-"),
            "spec.tasks[0].mounts[1].source.configMap.name",
            id="a configMap mount name ending in a dash is refused",
        ),
        pytest.param(
            lambda d: source(d, 2)["persistentVolumeClaim"].update(claimName="..%2f"),
            "spec.tasks[0].mounts[2].source.persistentVolumeClaim.claimName",
            id="a claim mount whose claimName is escaped is refused",
        ),
        pytest.param(
            lambda d: source(d, 2).update(persistentVolumeClaim={}),
            "spec.tasks[0].mounts[2].source.persistentVolumeClaim.claimName",
            id="a claim mount without a claimName is refused",
        ),
        pytest.param(
            lambda d: d["output"]["persistentVolumeClaim"].update(claimName="a" * 254),
            "spec.output.persistentVolumeClaim.claimName",
            id="an output claim name longer than 253 characters is refused",
        ),
        pytest.param(
            lambda d: d["template"].update(serviceAccountName="kube-system/default"),
            "spec.template.serviceAccountName",
            id="a service account name with a slash is refused",
        ),
        pytest.param(
            lambda d: d["template"].update(imagePullSecrets=[{"name": SECRET_PATH}]),
            "spec.template.imagePullSecrets[0].name",
            id="an image pull secret name that is a path is refused",
        ),
        pytest.param(
            lambda d: d["template"].update(priorityClassName="High"),
            "spec.template.priorityClassName",
            id="a priority class name in upper case is refused",
        ),
    ],
)
def test_object_names_are_dns_subdomains_and_name_the_field(mutate, field):
    with pytest.raises(spec.SpecInvalid) as e:
        spec.parse_spec(with_(mutate))
    assert field in [p.field for p in e.value.problems], e.value.problems


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: None, id="names with dots and dashes are accepted"),
        pytest.param(
            lambda d: d["output"]["persistentVolumeClaim"].update(claimName="a" * 253),
            id="a name of 253 characters is accepted",
        ),
        pytest.param(
            lambda d: d["template"].update(serviceAccountName="", priorityClassName=""),
            id="empty optional pod settings are accepted as no setting",
        ),
    ],
)
def test_valid_object_names_are_accepted(mutate):
    spec.parse_spec(with_(mutate))


def test_checked_sources_are_kept_as_written_with_their_other_fields():
    s = spec.parse_spec(BASE)
    the_task = s.tasks[0]
    assert the_task.mounts[0].source.as_volume() == BASE["tasks"][0]["mounts"][0]["source"]
    assert the_task.env[0].value_from == BASE["tasks"][0]["env"][0]["valueFrom"]
    assert s.template.image_pull_secrets == [{"name": "pull"}]


def test_checking_names_changes_no_fingerprint_and_no_template_hash():
    # Hashes of BASE before names were checked: no run reruns after an upgrade.
    s = spec.parse_spec(BASE)
    assert naming.fingerprint(s, s.models[0], s.tasks[0]) == "d5b5e658f5e803e9"
    assert manifests.template_hash(s) == "69e02d8c5db31ed7"


def _at(schema, path):
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


_SCHEMA = crd.build("evaltask")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC_SCHEMA = _SCHEMA["properties"]["spec"]
TASK = "tasks.[]"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("models.[].auth.secretRef.name", id="the auth secretRef name"),
        pytest.param("models.[].tls.caConfigMap.name", id="the caConfigMap name"),
        pytest.param(f"{TASK}.env.[].valueFrom.secretKeyRef.name", id="an env secretKeyRef"),
        pytest.param(f"{TASK}.env.[].valueFrom.configMapKeyRef.name", id="an env configMapKeyRef"),
        pytest.param(f"{TASK}.mounts.[].source.secret.secretName", id="a secret mount"),
        pytest.param(f"{TASK}.mounts.[].source.configMap.name", id="a configMap mount"),
        pytest.param(
            f"{TASK}.mounts.[].source.persistentVolumeClaim.claimName", id="a claim mount"
        ),
        pytest.param("output.persistentVolumeClaim.claimName", id="the output claim"),
        pytest.param("template.serviceAccountName", id="the service account"),
        pytest.param("template.imagePullSecrets.[].name", id="an image pull secret"),
        pytest.param("template.priorityClassName", id="the priority class"),
    ],
)
def test_the_crd_bounds_every_object_name(path):
    node = _at(SPEC_SCHEMA, path)
    assert node["maxLength"] == 253
    assert node["pattern"] in (spec.DNS_SUBDOMAIN_PATTERN, spec.OPTIONAL_DNS_SUBDOMAIN_PATTERN)


@pytest.mark.parametrize(
    ("path", "required"),
    [
        pytest.param(f"{TASK}.env.[].valueFrom.secretKeyRef", ["name", "key"], id="secretKeyRef"),
        pytest.param(
            f"{TASK}.env.[].valueFrom.configMapKeyRef", ["name", "key"], id="configMapKeyRef"
        ),
        pytest.param(f"{TASK}.mounts.[].source.secret", ["secretName"], id="a secret mount"),
        pytest.param(f"{TASK}.mounts.[].source.configMap", ["name"], id="a configMap mount"),
        pytest.param(
            f"{TASK}.mounts.[].source.persistentVolumeClaim", ["claimName"], id="a claim mount"
        ),
    ],
)
def test_the_crd_requires_the_names_the_operator_reads_and_keeps_other_fields(path, required):
    node = _at(SPEC_SCHEMA, path)
    assert sorted(node["required"]) == sorted(required)
    assert node.get("x-kubernetes-preserve-unknown-fields") is True
