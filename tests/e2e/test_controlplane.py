"""Smoke test: the local control plane runs real controllers.

The scheduler and the node leave alone pods of another scheduler, so the test plays
scheduler and kubelet itself for this one: it binds the Job's pod to a Node object of its
own and reports the container as finished.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest
from kubernetes import client

from localkube.controlplane import ControlPlane

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float = 60.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
    return result


def job_condition(job: client.V1Job, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])


@pytest.mark.e2e
def test_job_controller_runs_a_job_to_completion(
    control_plane: ControlPlane, api_client: client.ApiClient
) -> None:
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    ns, job_name, node = f"smoke-{uuid.uuid4().hex[:8]}", "hello", f"node-{uuid.uuid4().hex[:8]}"

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    # Pods are rejected until the serviceaccount controller made "default".
    wait_for(
        "the default service account",
        lambda: (
            core.list_namespaced_service_account(ns, field_selector="metadata.name=default").items
        ),
    )
    container = client.V1Container(name="main", image="busybox:1.36", command=["true"])
    batch.create_namespaced_job(
        ns,
        client.V1Job(
            metadata=client.V1ObjectMeta(name=job_name),
            spec=client.V1JobSpec(
                backoff_limit=0,
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(
                        containers=[container],
                        restart_policy="Never",
                        # No scheduler binds it: the pod stays unscheduled, never run.
                        scheduler_name="manual",
                    )
                ),
            ),
        ),
    )

    pods = wait_for(
        "the Job controller to create a pod",
        lambda: core.list_namespaced_pod(ns, label_selector=f"job-name={job_name}").items,
    )
    assert len(pods) == 1
    pod = pods[0].metadata.name

    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=node)))
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name=pod),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
    )
    # The server answers with a Status, which the client cannot parse as a V1Binding.
    core.create_namespaced_pod_binding(pod, ns, binding, _preload_content=False)
    assert core.read_namespaced_pod(pod, ns).spec.node_name == node

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    terminated = {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
    status = {
        "phase": "Succeeded",
        "containerStatuses": [
            {
                "name": "main",
                "image": container.image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    core.patch_namespaced_pod_status(pod, ns, {"status": status})

    def complete_job() -> client.V1Job | None:
        job = batch.read_namespaced_job(job_name, ns)
        return job if job_condition(job, "Complete") else None

    job = wait_for("the Job to become Complete", complete_job)
    assert job.status.succeeded == 1

    kubectl = [str(control_plane.bin_dir / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}"]
    succeeded = subprocess.run(
        [*kubectl, "-n", ns, "get", "job", job_name, "-o", "jsonpath={.status.succeeded}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert succeeded == "1"
