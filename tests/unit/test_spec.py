"""The spec models: defaults, and every rule with the field it names and its reason."""

from __future__ import annotations

import copy

import pytest

from eval_operator import spec

BASE = {
    "models": [
        {
            "name": "m1",
            "url": "https://api.example.com/v1/chat/completions",
            "auth": {"secretRef": {"name": "key", "key": "token"}},
        }
    ],
    "tasks": [{"name": "t1", "image": "registry.example.com/evals/bfcl"}],
}


def with_(path_value):
    doc = copy.deepcopy(BASE)
    path_value(doc)
    return doc


def test_defaults():
    s = spec.parse_spec(BASE)
    assert s.tasks[0].version == "latest"
    assert s.tasks[0].retries == 0 and s.tasks[0].weight == 1
    assert s.models[0].auth.header_key == "Authorization"
    assert s.output.mount_path == "/opt/ml/output"
    assert (s.parallelism, s.suspend, s.reuse, s.probe) == (0, False, False, True)


def test_digest_versions_use_at():
    s = spec.parse_spec(with_(lambda d: d["tasks"][0].update(version="sha256:" + "a" * 64)))
    assert s.tasks[0].image_ref == "registry.example.com/evals/bfcl@sha256:" + "a" * 64


def test_literal_auth_value_is_not_in_repr():
    s = spec.parse_spec(with_(lambda d: d["models"][0].update(auth={"value": "Bearer sk-1"})))
    assert "sk-1" not in repr(s)


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d.pop("models"), "spec.models", "InvalidField"),
        (lambda d: d.update(models=[]), "spec.models", "InvalidField"),
        (lambda d: d.update(tasks=[]), "spec.tasks", "InvalidField"),
        (lambda d: d["models"][0].update(name="Bad_Name"), "spec.models[0].name", "InvalidField"),
        (lambda d: d["models"][0].update(url="ftp://x"), "spec.models[0].url", "InvalidField"),
        (
            lambda d: d["models"][0].update(url="http://exa\u200bmple.com/v1/chat/completions"),
            "spec.models[0].url",
            "InvalidURL",
        ),
        (
            lambda d: d.update(
                models=[{"name": f"m{i}", "url": "http://x/v1"} for i in range(64)],
                tasks=[{"name": f"t{i}", "image": "i"} for i in range(17)],
            ),
            "spec",
            "TooManyRuns",
        ),
        (lambda d: d.update(probeTimeoutSeconds=0), "spec.probeTimeoutSeconds", "InvalidField"),
        (
            lambda d: d["models"].append(copy.deepcopy(d["models"][0])),
            "spec.models",
            "DuplicateName",
        ),
        (lambda d: d["tasks"].append(copy.deepcopy(d["tasks"][0])), "spec.tasks", "DuplicateName"),
        (
            lambda d: d["models"][0].update(auth={"headerKey": "X-Key"}),
            "spec.models[0].auth",
            "AuthSourceInvalid",
        ),
        (
            lambda d: d["models"][0].update(
                auth={"value": "v", "secretRef": {"name": "a", "key": "b"}}
            ),
            "spec.models[0].auth",
            "AuthSourceInvalid",
        ),
        (
            lambda d: d["models"][0]["auth"].update(headerKey="bad header"),
            "spec.models[0].auth.headerKey",
            "InvalidField",
        ),
        (
            lambda d: d["tasks"][0].update(env=[{"name": "EVAL_OUTPUT_DIR", "value": "/x"}]),
            "spec.tasks[0].env",
            "ReservedEnvName",
        ),
        (
            lambda d: d.update(parameters={"EVAL_INFERENCE_URL": "x"}),
            "spec.parameters",
            "ReservedEnvName",
        ),
        (
            lambda d: d["models"][0].update(parameters={"EVAL_TASK_NAME": "x"}),
            "spec.models[0].parameters",
            "ReservedEnvName",
        ),
        (
            lambda d: d["tasks"][0].update(env=[{"name": "A", "value": "1", "valueFrom": {}}]),
            "spec.tasks[0].env[0]",
            "EnvSourceInvalid",
        ),
        (
            lambda d: d["tasks"][0].update(env=[{"name": "1A", "value": "1"}]),
            "spec.tasks[0].env[0].name",
            "InvalidField",
        ),
        (lambda d: d["tasks"][0].update(version="v 1"), "spec.tasks[0].version", "InvalidField"),
        (lambda d: d["tasks"][0].update(image=""), "spec.tasks[0].image", "InvalidField"),
        (
            lambda d: d["tasks"][0].update(timeoutSeconds=0),
            "spec.tasks[0].timeoutSeconds",
            "InvalidField",
        ),
        (lambda d: d["tasks"][0].update(retries=-1), "spec.tasks[0].retries", "InvalidField"),
        (lambda d: d["tasks"][0].update(weight=-1), "spec.tasks[0].weight", "InvalidField"),
        (
            lambda d: d["tasks"][0].update(
                mounts=[{"name": "d", "mountPath": "rel", "source": {"emptyDir": {}}}]
            ),
            "spec.tasks[0].mounts[0].mountPath",
            "InvalidField",
        ),
        (
            lambda d: d["tasks"][0].update(mounts=[{"name": "d", "mountPath": "/d", "source": {}}]),
            "spec.tasks[0].mounts[0].source",
            "MountSourceInvalid",
        ),
        (
            lambda d: d["tasks"][0].update(
                mounts=[
                    {
                        "name": "d",
                        "mountPath": "/d",
                        "source": {"emptyDir": {}, "configMap": {"name": "c"}},
                    }
                ]
            ),
            "spec.tasks[0].mounts[0].source",
            "MountSourceInvalid",
        ),
        (
            lambda d: d["tasks"][0].update(
                mounts=[{"name": "eval-output", "mountPath": "/d", "source": {"emptyDir": {}}}]
            ),
            "spec.tasks[0].mounts[0].name",
            "ReservedMountName",
        ),
        (
            lambda d: d["tasks"][0].update(
                mounts=[{"name": "o", "mountPath": "/opt/ml/output/", "source": {"emptyDir": {}}}]
            ),
            "spec.tasks[0].mounts[0].mountPath",
            "MountPathConflict",
        ),
        (
            lambda d: (
                d["models"][0].update(tls={"caConfigMap": {"name": "ca", "key": "ca.crt"}}),
                d["tasks"][0].update(
                    mounts=[
                        {
                            "name": "o",
                            "mountPath": "/etc/eval-operator/model-ca",
                            "source": {"emptyDir": {}},
                        }
                    ]
                ),
            ),
            "spec.tasks[0].mounts[0].mountPath",
            "MountPathConflict",
        ),
        (
            lambda d: d["models"][0].update(tls={"caConfigMap": {"name": "ca"}}),
            "spec.models[0].tls.caConfigMap.key",
            "InvalidField",
        ),
        (
            lambda d: d["tasks"][0].update(results={"format": "helm"}),
            "spec.tasks[0].results.format",
            "InvalidField",
        ),
        (
            lambda d: d["tasks"][0].update(results={"format": "lm-eval", "path": "a/../../etc"}),
            "spec.tasks[0].results.path",
            "ResultsPathInvalid",
        ),
        (
            lambda d: d["tasks"][0].update(results={"format": "lm-eval", "path": "/etc"}),
            "spec.tasks[0].results.path",
            "InvalidField",
        ),
        (lambda d: d.update(parallelism=-1), "spec.parallelism", "InvalidField"),
        (lambda d: d.update(unknownField=1), "spec.unknownField", "InvalidField"),
        (
            lambda d: d["tasks"][0].update(resources={"requests": {"cpu": 0.5}}),
            "spec.tasks[0].resources.requests.cpu",
            "InvalidQuantity",
        ),
        (
            lambda d: d["tasks"][0].update(primaryMetric="a", metricWeights={"a": 1}),
            "spec.tasks[0]",
            "ScoreRuleInvalid",
        ),
        (
            lambda d: d["tasks"][0].update(metricWeights={"a": 0, "b": 0}),
            "spec.tasks[0]",
            "ScoreRuleInvalid",
        ),
        (
            lambda d: d["tasks"][0].update(metricWeights={"a": -1}),
            "spec.tasks[0].metricWeights.a",
            "InvalidField",
        ),
        (
            lambda d: d["tasks"][0].update(metricWeights={"x" * 101: 1}),
            "spec.tasks[0]",
            "ScoreRuleInvalid",
        ),
        (
            lambda d: d["tasks"][0].update(metricWeights={f"m{i}": 1 for i in range(17)}),
            "spec.tasks[0].metricWeights",
            "InvalidField",
        ),
    ],
    ids=[
        "models missing",
        "no models",
        "no tasks",
        "a model name that is no DNS label",
        "a url that is not http",
        "a url whose host the runner cannot encode (a zero-width space)",
        "more runs than an EvalTask may have",
        "a zero probe timeout",
        "duplicate model names",
        "duplicate task names",
        "auth with neither secretRef nor value",
        "auth with both secretRef and value",
        "a header key with a space",
        "a task env sets a reserved name",
        "spec.parameters sets a reserved name",
        "model parameters set a reserved name",
        "an env var with value and valueFrom",
        "an env name starting with a digit",
        "a version with a space",
        "an empty image",
        "a zero timeout",
        "negative retries",
        "a negative weight",
        "a relative mount path",
        "a mount without a source",
        "a mount with two sources",
        "a mount named like the output volume",
        "a mount on the output path",
        "a mount on the private CA's path",
        "a CA reference without its key",
        "a results format the collector does not read",
        "a results path that leaves the output folder",
        "an absolute results path",
        "negative parallelism",
        "an unknown field",
        "a fractional quantity as a number",
        "both primaryMetric and metricWeights",
        "metricWeights all 0",
        "a negative metric weight",
        "a weighted metric name longer than a metric's",
        "more weighted metrics than a task may have",
    ],
)
def test_invalid_specs_name_the_field_and_reason(mutate, field, reason):
    with pytest.raises(spec.SpecInvalid) as e:
        spec.parse_spec(with_(mutate))
    problems = e.value.problems
    assert any(p.field == field and p.reason == reason for p in problems), problems
    assert field in str(e.value)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("tasks", 1, "env", 0, "name"), "spec.tasks[1].env[0].name"),
        (("parameters", "EVAL_X", "[key]"), "spec.parameters.EVAL_X"),
        (("models", 0, "parameters", "a.b"), "spec.models[0].parameters['a.b']"),
        ((), "spec"),
    ],
    ids=["nested list items", "a dict key", "a key that is no identifier", "the root"],
)
def test_field_paths_read_like_kubectl(loc, path):
    assert spec.field_path(loc) == path


@pytest.mark.parametrize(
    ("mutate", "quoted"),
    [
        pytest.param(
            lambda d: d["tasks"][0].update(results={"path": "../up"}), "'../up'", id="a path"
        ),
        pytest.param(
            lambda d: d["tasks"].append(copy.deepcopy(d["tasks"][0])), "'t1'", id="a name twice"
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(metricWeights={"x" * 101: 1}),
            "'" + "x" * 40 + "'",
            id="a metric name too long",
        ),
    ],
)
def test_a_message_quotes_what_was_wrong_rather_than_a_placeholder(mutate, quoted):
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(spec.SpecInvalid) as e:
        spec.parse_spec(doc)
    assert quoted in str(e.value)
    assert "!r}" not in str(e.value)
