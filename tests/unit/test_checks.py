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
