"""Job names, labels and the fingerprint."""

from __future__ import annotations

import copy
import re

import pytest

from eval_operator import naming, spec

BASE = {
    "models": [
        {
            "name": "m1",
            "url": "https://a.example/v1/chat/completions",
            "auth": {"secretRef": {"name": "key", "key": "token"}},
        }
    ],
    "tasks": [
        {"name": "t1", "image": "evals/x", "args": ["a"], "env": [{"name": "A", "value": "1"}]}
    ],
}


def fp(doc):
    s = spec.parse_spec(doc)
    return naming.fingerprint(s, s.models[0], s.tasks[0])


def changed(mutate):
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return doc


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d["models"][0].update(name="m2"), id="model name"),
        pytest.param(
            lambda d: d["models"][0].update(url="https://b.example/v1/chat/completions"),
            id="model url",
        ),
        pytest.param(
            lambda d: d["models"][0]["auth"].update(headerKey="X-Api-Key"), id="auth header key"
        ),
        pytest.param(
            lambda d: d["models"][0]["auth"]["secretRef"].update(name="other"),
            id="auth secret reference",
        ),
        pytest.param(lambda d: d["models"][0].update(auth=None), id="auth removed"),
        pytest.param(lambda d: d["tasks"][0].update(image="evals/y"), id="image"),
        pytest.param(lambda d: d["tasks"][0].update(version="v2"), id="version"),
        pytest.param(lambda d: d["tasks"][0].update(command=["bash"]), id="command"),
        pytest.param(lambda d: d["tasks"][0].update(args=["b"]), id="args"),
        pytest.param(lambda d: d["tasks"][0].update(env=[{"name": "A", "value": "2"}]), id="env"),
        pytest.param(
            lambda d: d["tasks"][0].update(
                mounts=[{"name": "d", "mountPath": "/d", "source": {"emptyDir": {}}}]
            ),
            id="mounts",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(resources={"requests": {"cpu": "1"}}), id="resources"
        ),
        pytest.param(lambda d: d.update(parameters={"MAX_CONCURRENCY": "8"}), id="spec parameters"),
        pytest.param(
            lambda d: d["models"][0].update(parameters={"TEMPERATURE": "0"}), id="model parameters"
        ),
        pytest.param(lambda d: d.update(output={"mountPath": "/out"}), id="output"),
        pytest.param(
            lambda d: d["models"][0].update(tls={"caConfigMap": {"name": "ca", "key": "ca.crt"}}),
            id="tls",
        ),
        pytest.param(
            lambda d: d["tasks"][0].update(results={"format": "lm-eval"}), id="results format"
        ),
    ],
)
def test_fingerprint_changes_with_what_determines_the_result(mutate):
    assert fp(changed(mutate)) != fp(BASE)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d["tasks"][0].update(weight=5), id="weight"),
        pytest.param(lambda d: d["tasks"][0].update(primaryMetric="f1"), id="primary metric"),
        pytest.param(
            lambda d: d["tasks"][0].update(metricWeights={"f1": 1, "acc": 2}), id="metric weights"
        ),
        pytest.param(lambda d: d["tasks"][0].update(timeoutSeconds=60), id="timeout"),
        pytest.param(lambda d: d["tasks"][0].update(retries=3), id="retries"),
        pytest.param(lambda d: d.update(parallelism=1, suspend=True), id="parallelism and suspend"),
        pytest.param(lambda d: d.update(template={"labels": {"a": "b"}}), id="pod template"),
        pytest.param(
            lambda d: d["tasks"].append({"name": "t2", "image": "evals/z"}), id="another task added"
        ),
        pytest.param(
            lambda d: d.update(parameters={"MAX_CONCURRENCY": "24"}),
            id="a parameter set to its default",
        ),
    ],
)
def test_fingerprint_ignores_what_does_not(mutate):
    assert fp(changed(mutate)) == fp(BASE)


def test_a_model_without_tls_keeps_the_fingerprint_it_had_before_tls_existed():
    # Runs recorded before the field existed must not rerun after an upgrade.
    assert fp(BASE) == "60c0d4b767b1e6d9"


def test_literal_auth_values_never_enter_the_fingerprint():
    a = changed(lambda d: d["models"][0].update(auth={"value": "Bearer one"}))
    b = changed(lambda d: d["models"][0].update(auth={"value": "Bearer two"}))
    assert fp(a) == fp(b)


DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("evaltask", "model", "task"),
    [
        pytest.param("bfcl", "deepseek-v3-2", "simple-python", id="short names stay readable"),
        pytest.param("e" * 253, "m" * 63, "t" * 63, id="the longest names"),
        pytest.param("a" * 60, "b", "c", id="a long evaltask name"),
        pytest.param("x-" * 30, "y", "z", id="a truncation that would end in a dash"),
    ],
)
def test_job_names_fit_in_63_characters(evaltask, model, task):
    name = naming.job_name(evaltask, model, task, "0123456789abcdef")
    assert len(name) <= 63
    assert DNS.match(name), name
    assert name.endswith("-01234567")
    assert name == naming.job_name(evaltask, model, task, "0123456789abcdef")


def test_short_names_read_as_their_parts():
    assert naming.job_name("bfcl", "ds", "py", "0123456789abcdef") == "bfcl-ds-py-01234567"


def test_truncated_names_stay_unique():
    names = {naming.job_name("e" * 100, f"model-{i}", "t" * 40, "0" * 16) for i in range(50)}
    names |= {
        naming.job_name("e" * 100, "model-0", f"task-{i}" + "t" * 40, "0" * 16) for i in range(50)
    }
    assert len(names) == 100


def test_label_values_fit():
    labels = naming.run_labels("e" * 253, "uid", "m", "t", "f" * 16)
    assert all(len(v) <= 63 for v in labels.values())
