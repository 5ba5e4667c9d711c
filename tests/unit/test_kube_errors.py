"""API responses map onto the operator's error tree."""

from __future__ import annotations

import json

import pytest

from eval_operator import kube

INVALID = json.dumps(
    {
        "kind": "Status",
        "reason": "Invalid",
        "message": "Job is invalid",
        "details": {
            "causes": [{"field": "spec.template.spec.volumes[1]", "message": "Required value"}]
        },
    }
)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (404, '{"reason": "NotFound", "message": "x not found"}', kube.NotFound),
        (409, '{"reason": "AlreadyExists"}', kube.Conflict),
        (422, INVALID, kube.Invalid),
        (429, "", kube.Transient),
        (503, "upstream connect error", kube.Transient),
        (0, "", kube.Transient),
        (403, '{"reason": "Forbidden", "message": "exceeded quota"}', kube.Refused),
        (400, '{"reason": "BadRequest", "message": "denied by webhook"}', kube.Refused),
        (413, "Request Entity Too Large", kube.Refused),
    ],
    ids=[
        "404 is NotFound",
        "409 is Conflict",
        "422 is Invalid with causes",
        "429 is Transient",
        "5xx with a plain body is Transient",
        "no answer is Transient",
        "403 is a refusal",
        "400 is a refusal",
        "413 is a refusal",
    ],
)
def test_error_from_status(status, body, kind):
    error = kube.error_from_status(status, body)
    assert type(error) is kind
    assert error.status == status


def test_invalid_keeps_field_causes():
    error = kube.error_from_status(422, INVALID)
    assert error.causes == [{"field": "spec.template.spec.volumes[1]", "message": "Required value"}]
    assert error.message == "Job is invalid"
