"""Every path segment that comes from user data is quoted: a name never walks the URL."""

from __future__ import annotations

import pytest

from eval_operator import kube

EVIL = "../../kube-system/secrets/x"
QUOTED = "..%2F..%2Fkube-system%2Fsecrets%2Fx"


class PathClient:
    """Stands in for kubernetes.client.ApiClient: records each call's resource path."""

    def __init__(self):
        self.paths = []

    def param_serialize(self, method, resource_path, **_):
        self.paths.append(resource_path)
        return method, resource_path, {}, None, None

    def call_api(self, method, url, headers, body, post, _request_timeout=None):
        class Response:
            status = 200

            def read(self):
                return b"{}"

        return Response()


EVENT_OWNER = {"metadata": {"name": "et", "namespace": EVIL, "uid": "u"}}


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda api: api.read_secret("ns", EVIL), id="a Secret's name"),
        pytest.param(lambda api: api.read_configmap("ns", EVIL), id="a ConfigMap's name"),
        pytest.param(lambda api: api.patch_secret("ns", EVIL, {}), id="a patched Secret's name"),
        pytest.param(lambda api: api.read_secret(EVIL, "s"), id="a namespace"),
        pytest.param(lambda api: api.get_evaltask("ns", EVIL), id="an EvalTask's name"),
        pytest.param(
            lambda api: api.patch_evaltask_status("ns", EVIL, {}), id="an EvalTask status's name"
        ),
        pytest.param(
            lambda api: api.patch_evaltask_annotations("ns", EVIL, {}),
            id="an annotated EvalTask's name",
        ),
        pytest.param(lambda api: api.list_evaltasks(EVIL), id="the namespace of a list"),
        pytest.param(lambda api: api.list_jobs(EVIL, "a=b"), id="the namespace of Jobs"),
        pytest.param(lambda api: api.list_pods(EVIL, "a=b"), id="the namespace of pods"),
        pytest.param(lambda api: api.list_evalruns(EVIL, "a=b"), id="the namespace of EvalRuns"),
        pytest.param(lambda api: api.delete_evalrun("ns", EVIL), id="a deleted EvalRun's name"),
        pytest.param(
            lambda api: api.patch_evalrun_status("ns", EVIL, {}), id="an EvalRun status's name"
        ),
        pytest.param(
            lambda api: api.create_evalrun({"metadata": {"namespace": EVIL}}),
            id="a created EvalRun's namespace",
        ),
        pytest.param(lambda api: api.delete_job("ns", EVIL), id="a deleted Job's name"),
        pytest.param(lambda api: api.patch_job("ns", EVIL, {}), id="a patched Job's name"),
        pytest.param(
            lambda api: api.create_job({"metadata": {"namespace": EVIL}}),
            id="a created Job's namespace",
        ),
        pytest.param(
            lambda api: api.create_secret({"metadata": {"namespace": EVIL}}),
            id="a created Secret's namespace",
        ),
        pytest.param(lambda api: api.read_pod_log("ns", EVIL, "task", 10, 100), id="a pod's name"),
        pytest.param(lambda api: api.create_failures(EVIL, "uid"), id="the namespace of events"),
        pytest.param(
            lambda api: api.post_event(EVENT_OWNER, "Normal", "R", "m"),
            id="the namespace of a posted event",
        ),
    ],
)
def test_user_data_in_a_path_is_quoted(call):
    client = PathClient()
    call(kube.KubeApi(client))
    [path] = client.paths
    assert ".." not in path.split("/"), path
    assert QUOTED in path
