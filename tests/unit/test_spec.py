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
        pytest.param(lambda d: d.pop("models"), "spec.models", "InvalidField", id="models missing"),
        pytest.param(lambda d: d.update(models=[]), "spec.models", "InvalidField", id="no models"),
        pytest.param(lambda d: d.update(tasks=[]), "spec.tasks", "InvalidField", id="no tasks"),
        pytest.param(
            lambda d: d["models"][0].update(name="Bad_Name"),
            "spec.models[0].name",
            "InvalidField",
            id="a model name that is no DNS label",
        ),
        pytest.param(
            lambda d: d["models"][0].update(url="ftp://x"),
            "spec.models[0].url",
            "InvalidField",
            id="a url that is not http",
        ),
        pytest.param(
            lambda d: d["models"][0].update(url="http://exa\u200bmple.com/v1/chat/completions"),
            "spec.models[0].url",
            "InvalidURL",
            id="a url whose host the runner cannot encode (a zero-width space)",
        ),
        pytest.param(
            lambda d: d.update(
                models=[{"name": f"m{i}", "url": "http://x/v1"} for i in range(64)],
                tasks=[{"name": f"t{i}", "image": "i"} for i in range(17)],
            ),
            "spec",
            "TooManyRuns",
            id="more runs than an EvalTask may have",
        ),
        pytest.param(
            lambda d: d.update(probeTimeoutSeconds=0),
            "spec.probeTimeoutSeconds",
            "InvalidField",
            id="a zero probe timeout",
        ),
        pytest.param(
            lambda d: d["models"].append(copy.deepcopy(d["models"][0])),
            "spec.models",
            "DuplicateName",
            id="duplicate model names",
        ),
        pytest.param(
            lambda d: d["tasks"].append(copy.deepcopy(d["tasks"][0])),
            "spec.tasks",
            "DuplicateName",
            id="duplicate task names",
        ),
        pytest.param(
            lambda d: d["models"][0].update(auth={"headerKey": "X-Key"}),
            "spec.models[0].auth",
            "AuthSourceInvalid",
            id="auth with neither secretRef nor value",
        ),
        pytest.param(
            lambda d: d["models"][0].update(
                auth={"value": "v", "secretRef": {"name": "a", "key": "b"}}
            ),
            "spec.models[0].auth",
            "AuthSourceInvalid",
            id="auth with both secretRef and value",
        ),
        pytest.param(
            lambda d: d["models"][0]["auth"].update(headerKey="bad header"),
            "spec.models[0].auth.headerKey",
            "InvalidField",
            id="a header key with a space",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(env=[{"name": "EVAL_OUTPUT_DIR", "value": "/x"}]),
            "spec.tasks[0].env",
            "ReservedEnvName",
            id="a task env sets a reserved name",
        ),
        pytest.param(
            lambda d: d.update(parameters={"EVAL_INFERENCE_URL": "x"}),
            "spec.parameters",
            "ReservedEnvName",
            id="spec.parameters sets a reserved name",
        ),
        pytest.param(
            lambda d: d["models"][0].update(parameters={"EVAL_TASK_NAME": "x"}),
            "spec.models[0].parameters",
            "ReservedEnvName",
            id="model parameters set a reserved name",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(env=[{"name": "A", "value": "1", "valueFrom": {}}]),
            "spec.tasks[0].env[0]",
            "EnvSourceInvalid",
            id="an env var with value and valueFrom",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(env=[{"name": "1A", "value": "1"}]),
            "spec.tasks[0].env[0].name",
            "InvalidField",
            id="an env name starting with a digit",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(version="v 1"),
            "spec.tasks[0].version",
            "InvalidField",
            id="a version with a space",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(image=""),
            "spec.tasks[0].image",
            "InvalidField",
            id="an empty image",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(timeoutSeconds=0),
            "spec.tasks[0].timeoutSeconds",
            "InvalidField",
            id="a zero timeout",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(retries=-1),
            "spec.tasks[0].retries",
            "InvalidField",
            id="negative retries",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(weight=-1),
            "spec.tasks[0].weight",
            "InvalidField",
            id="a negative weight",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(
                mounts=[{"name": "d", "mountPath": "rel", "source": {"emptyDir": {}}}]
            ),
            "spec.tasks[0].mounts[0].mountPath",
            "InvalidField",
            id="a relative mount path",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(mounts=[{"name": "d", "mountPath": "/d", "source": {}}]),
            "spec.tasks[0].mounts[0].source",
            "MountSourceInvalid",
            id="a mount without a source",
        ),
        pytest.param(
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
            id="a mount with two sources",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(
                mounts=[{"name": "eval-output", "mountPath": "/d", "source": {"emptyDir": {}}}]
            ),
            "spec.tasks[0].mounts[0].name",
            "ReservedMountName",
            id="a mount named like the output volume",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(
                mounts=[{"name": "o", "mountPath": "/opt/ml/output/", "source": {"emptyDir": {}}}]
            ),
            "spec.tasks[0].mounts[0].mountPath",
            "MountPathConflict",
            id="a mount on the output path",
        ),
        pytest.param(
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
            id="a mount on the private CA's path",
        ),
        pytest.param(
            lambda d: d["models"][0].update(tls={"caConfigMap": {"name": "ca"}}),
            "spec.models[0].tls.caConfigMap.key",
            "InvalidField",
            id="a CA reference without its key",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(results={"format": "helm"}),
            "spec.tasks[0].results.format",
            "InvalidField",
            id="a results format the collector does not read",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(results={"format": "lm-eval", "path": "a/../../etc"}),
            "spec.tasks[0].results.path",
            "ResultsPathInvalid",
            id="a results path that leaves the output folder",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(results={"format": "lm-eval", "path": "/etc"}),
            "spec.tasks[0].results.path",
            "InvalidField",
            id="an absolute results path",
        ),
        pytest.param(
            lambda d: d.update(parallelism=-1),
            "spec.parallelism",
            "InvalidField",
            id="negative parallelism",
        ),
        pytest.param(
            lambda d: d.update(unknownField=1),
            "spec.unknownField",
            "InvalidField",
            id="an unknown field",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(resources={"requests": {"cpu": 0.5}}),
            "spec.tasks[0].resources.requests.cpu",
            "InvalidQuantity",
            id="a fractional quantity as a number",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(primaryMetric="a", metricWeights={"a": 1}),
            "spec.tasks[0]",
            "ScoreRuleInvalid",
            id="both primaryMetric and metricWeights",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(metricWeights={"a": 0, "b": 0}),
            "spec.tasks[0]",
            "ScoreRuleInvalid",
            id="metricWeights all 0",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(metricWeights={"a": -1}),
            "spec.tasks[0].metricWeights.a",
            "InvalidField",
            id="a negative metric weight",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(metricWeights={"x" * 101: 1}),
            "spec.tasks[0]",
            "ScoreRuleInvalid",
            id="a weighted metric name longer than a metric's",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(metricWeights={f"m{i}": 1 for i in range(17)}),
            "spec.tasks[0].metricWeights",
            "InvalidField",
            id="more weighted metrics than a task may have",
        ),
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
        pytest.param(
            ("tasks", 1, "env", 0, "name"), "spec.tasks[1].env[0].name", id="nested list items"
        ),
        pytest.param(("parameters", "EVAL_X", "[key]"), "spec.parameters.EVAL_X", id="a dict key"),
        pytest.param(
            ("models", 0, "parameters", "a.b"),
            "spec.models[0].parameters['a.b']",
            id="a key that is no identifier",
        ),
        pytest.param((), "spec", id="the root"),
    ],
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
