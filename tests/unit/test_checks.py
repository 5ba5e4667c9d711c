"""A field the API server rejects in a Job maps back to the EvalTask field a user edits."""

from __future__ import annotations

import pytest

from eval_operator import checks


@pytest.mark.parametrize(
    ("job_field", "spec_field"),
    [
        pytest.param(
            "spec.template.spec.volumes[3].hostPath.path",
            "spec.tasks[3].mounts[1]",
            id="a user volume",
        ),
        pytest.param(
            "spec.template.spec.initContainers[1].volumeMounts[1].name",
            "spec.tasks[3].mounts[0]",
            id="a user volume mount",
        ),
        pytest.param(
            "spec.template.spec.initContainers[1].image", "spec.tasks[3].version", id="the image"
        ),
        pytest.param(
            "spec.template.spec.initContainers[1].resources.requests[cpu]",
            "spec.tasks[3].resources",
            id="resources",
        ),
        pytest.param(
            "spec.template.spec.initContainers[1].env[7].valueFrom",
            "spec.tasks[3].env (or spec.models[1])",
            id="env (task or model parameters)",
        ),
        pytest.param(
            "spec.template.spec.tolerations[0].effect",
            "spec.template.tolerations",
            id="tolerations",
        ),
        pytest.param(
            "spec.template.spec.securityContext.runAsUser",
            "spec.template.securityContext",
            id="the pod security context",
        ),
        pytest.param("metadata.labels", "spec.template.labels", id="labels"),
        pytest.param(
            "spec.template.metadata.annotations", "spec.template.annotations", id="annotations"
        ),
        pytest.param(
            "spec.activeDeadlineSeconds", "spec.tasks[3]", id="anything else names the task"
        ),
    ],
)
def test_spec_field_for(job_field, spec_field):
    assert checks.spec_field_for(job_field, 1, 3) == spec_field


def references_spec(**task):
    """One model authenticated by Secret `key`, one task with `task`'s fields."""
    from eval_operator import spec

    return spec.parse_spec(
        {
            "models": [
                {
                    "name": "m1",
                    "url": "http://m1/v1/chat/completions",
                    "auth": {"secretRef": {"name": "key", "key": "token"}},
                }
            ],
            "tasks": [{"name": "t1", "image": "evals/t1", **task}],
        }
    )


ENV_SECRET = {"name": "API", "valueFrom": {"secretKeyRef": {"name": "env", "key": "api"}}}
ENV_OPTIONAL = {
    "name": "OPT",
    "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}},
}
MOUNT = {"name": "creds", "mountPath": "/creds", "source": {"secret": {"secretName": "files"}}}


@pytest.mark.parametrize(
    ("task", "secrets", "problems", "values"),
    [
        pytest.param(
            {}, {"key": {"token": "Bearer a"}}, [], ["Bearer a"], id="the auth secret's value"
        ),
        pytest.param(
            {},
            {},
            [("spec.models[0].auth.secretRef", "SecretNotFound")],
            [],
            id="a missing auth secret",
        ),
        pytest.param(
            {},
            {"key": {"other": "x"}},
            [("spec.models[0].auth.secretRef", "SecretKeyNotFound")],
            [],
            id="a missing key",
        ),
        pytest.param(
            {"env": [ENV_SECRET, ENV_OPTIONAL]},
            {"key": {"token": "Bearer a"}, "env": {"api": "sk-env"}},
            [],
            ["Bearer a", "sk-env"],
            id="an env secret is read too, an optional missing one is no problem",
        ),
        pytest.param(
            {"mounts": [MOUNT]},
            {"key": {"token": "Bearer a"}, "files": {"a": "one", "b": "two"}},
            [],
            ["Bearer a", "one", "two"],
            id="every value of a mounted secret",
        ),
    ],
)
def test_check_references_returns_the_problems_and_the_values_to_redact(
    task, secrets, problems, values
):
    from tests.handler.fake_api import FakeApi

    api = FakeApi()
    for name, data in secrets.items():
        api.add_secret(name, data)
    found, read = checks.check_references(api, "ns", references_spec(**task))
    assert [(p.field, p.reason) for p in found] == problems
    assert sorted(read) == sorted(values)
