"""No secret value reaches anything the operator writes, on the real cluster.

A task prints its auth header and a mounted Secret's value, then exits 1. While it runs
the operator is paused (SIGSTOP), and both Secrets are rotated once the task has ended,
so its failure is recorded after the rotation, as happens when a cleanup rotates keys.
Then every Job, pod, event, EvalRun and EvalTask (status and annotations) of the
namespace, the operator's log and /metrics are searched for each value: none is there.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
import uuid
from typing import Any

import pytest
from kubernetes import client

from localkube.cluster import LocalCluster
from tests.e2e.support import BASE_IMAGE, BASE_VERSION, Api, wait_for

pytestmark = pytest.mark.e2e
PRINTS = """
import os, sys, time
print("header:", os.environ["EVAL_AUTHORIZATION_HEADER_VALUE"], flush=True)
print("mounted:", open("/files/pw").read(), flush=True)
time.sleep(3)
sys.exit(1)
"""


def task_ended(api: Api) -> bool:
    for pod in api.pods():
        for status in pod.status.init_container_statuses or []:
            if status.name == "task" and status.state.terminated:
                return True
    return False


def everything(api: Api, name: str, cluster: LocalCluster) -> str:
    """The namespace's Jobs, pods, events, EvalRuns and the EvalTask, as JSON, then the
    operator's log and /metrics."""
    serialize = api.core.api_client.sanitize_for_serialization
    parts: list[Any] = [
        serialize(api.batch.list_namespaced_job(api.ns)),
        serialize(api.core.list_namespaced_pod(api.ns)),
        serialize(api.core.list_namespaced_event(api.ns)),
        api.custom.list_namespaced_custom_object("evaloperator.io", "v1alpha1", api.ns, "evalruns"),
        api.evaltask(name),
    ]
    path = f"/apis/events.k8s.io/v1/namespaces/{api.ns}/events"
    response = api.core.api_client.call_api(
        *api.core.api_client.param_serialize("GET", path, auth_settings=["BearerToken"])
    )
    parts.append(json.loads(response.read()))
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics") as r:
        metrics = r.read().decode()
    return json.dumps(parts) + cluster.operator_log.read_text() + metrics


def test_no_secret_value_reaches_any_object_the_log_or_metrics(
    cluster: LocalCluster, api: Api, models: Any
) -> None:
    tag = uuid.uuid4().hex[:10]
    before, after = f"rot-before-{tag}", f"rot-after-{tag}"
    mounted, mounted_after = f"mnt-{tag}-value", f"mnt-{tag}-rotated"
    api.secret("rot-key", {"token": f"Bearer {before}"})
    api.secret("files", {"pw": mounted})
    api.create_evaltask(
        "leaky",
        {
            "probe": False,
            "models": [
                {
                    "name": "m1",
                    "url": models[0].url,
                    "auth": {"secretRef": {"name": "rot-key", "key": "token"}},
                }
            ],
            "tasks": [
                {
                    "name": "prints",
                    "image": BASE_IMAGE,
                    "version": BASE_VERSION,
                    "command": ["python", "-c", PRINTS],
                    "mounts": [
                        {
                            "name": "files",
                            "mountPath": "/files",
                            "source": {"secret": {"secretName": "files"}},
                        }
                    ],
                }
            ],
        },
    )
    wait_for(
        lambda: any(
            s.name == "task" and s.state.running
            for p in api.pods()
            for s in p.status.init_container_statuses or []
        ),
        90,
        "the task to run",
    )
    assert cluster.operator is not None
    os.kill(cluster.operator.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: task_ended(api), 60, "the task to print and fail")
        for secret, data in (
            ("rot-key", {"token": f"Bearer {after}"}),
            ("files", {"pw": mounted_after}),
        ):
            api.core.patch_namespaced_secret(secret, api.ns, client.V1Secret(string_data=data))
    finally:
        os.kill(cluster.operator.pid, signal.SIGCONT)
    status = api.wait_phase("leaky", ("Failed",), timeout=90)
    [record] = api.runs("leaky")
    assert "exited with code 1" in record["message"], record
    assert "header: [redacted]" in record["message"], record["message"]
    assert "mounted: [redacted]" in record["message"], record["message"]
    found = everything(api, "leaky", cluster)
    for value in (before, after, mounted, mounted_after):
        assert found.count(value) == 0, value
    assert status["failed"] == 1
