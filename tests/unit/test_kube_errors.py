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
        pytest.param(
            404,
            '{"reason": "NotFound", "message": "x not found"}',
            kube.NotFound,
            id="404 is NotFound",
        ),
        pytest.param(409, '{"reason": "AlreadyExists"}', kube.Conflict, id="409 is Conflict"),
        pytest.param(422, INVALID, kube.Invalid, id="422 is Invalid with causes"),
        pytest.param(429, "", kube.Transient, id="429 is Transient"),
        pytest.param(
            503, "upstream connect error", kube.Transient, id="5xx with a plain body is Transient"
        ),
        pytest.param(0, "", kube.Transient, id="no answer is Transient"),
        pytest.param(
            403,
            '{"reason": "Forbidden", "message": "exceeded quota"}',
            kube.Refused,
            id="403 is a refusal",
        ),
        pytest.param(
            400,
            '{"reason": "BadRequest", "message": "denied by webhook"}',
            kube.Refused,
            id="400 is a refusal",
        ),
        pytest.param(413, "Request Entity Too Large", kube.Refused, id="413 is a refusal"),
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


class RecordingClient:
    """Stands in for kubernetes.client.ApiClient: records how each call is made."""

    def __init__(self):
        self.timeouts = []

    def param_serialize(self, method, resource_path, **_):
        return method, resource_path, {}, None, None

    def call_api(self, method, url, headers, body, post, _request_timeout=None):
        self.timeouts.append(_request_timeout)

        class Response:
            status = 200

            def read(self):
                return b'{"items": [], "metadata": {"uid": "u"}}'

        return Response()


def test_every_api_call_has_a_timeout():
    recording = RecordingClient()
    api = kube.KubeApi(recording)
    api.get_evaltask("ns", "et")
    api.list_evalruns("ns", "a=b")
    api.list_jobs("ns", "a=b")
    api.list_pods("ns", "a=b")
    api.create_failures("ns", "uid")
    api.create_evalrun({"metadata": {"namespace": "ns"}})
    api.patch_evalrun_status("ns", "r", {})
    assert recording.timeouts == [kube.REQUEST_TIMEOUT] * 7
    assert all(t is not None and t[0] > 0 and t[1] > 0 for t in recording.timeouts)
