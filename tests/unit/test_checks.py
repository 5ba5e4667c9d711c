"""A field the API server rejects in a Job maps back to the EvalTask field a user edits."""

from __future__ import annotations

import pytest

from eval_operator import checks


@pytest.mark.parametrize(
    ("job_field", "spec_field"),
    [
        ("spec.template.spec.volumes[3].hostPath.path", "spec.tasks[3].mounts[1]"),
        ("spec.template.spec.initContainers[1].volumeMounts[1].name", "spec.tasks[3].mounts[0]"),
        ("spec.template.spec.initContainers[1].image", "spec.tasks[3].version"),
        ("spec.template.spec.initContainers[1].resources.requests[cpu]", "spec.tasks[3].resources"),
        (
            "spec.template.spec.initContainers[1].env[7].valueFrom",
            "spec.tasks[3].env (or spec.models[1])",
        ),
        ("spec.template.spec.tolerations[0].effect", "spec.template.tolerations"),
        ("spec.template.spec.securityContext.runAsUser", "spec.template.securityContext"),
        ("metadata.labels", "spec.template.labels"),
        ("spec.template.metadata.annotations", "spec.template.annotations"),
        ("spec.activeDeadlineSeconds", "spec.tasks[3]"),
    ],
    ids=[
        "a user volume",
        "a user volume mount",
        "the image",
        "resources",
        "env (task or model parameters)",
        "tolerations",
        "the pod security context",
        "labels",
        "annotations",
        "anything else names the task",
    ],
)
def test_spec_field_for(job_field, spec_field):
    assert checks.spec_field_for(job_field, 1, 3) == spec_field
