"""End to end on a real node of its own: kubelet and containerd run our real images.

This module's cluster is a second one beside the session's (another node name, address,
bridge and cgroup root), because its controller manager collects finished pods at once.

The control plane here also runs kube-scheduler, and kubelet runs every pod in containers
of images built from our Dockerfiles (the runner image is every Job's probe and collector)
or from our Debian base (the tasks' scripts). What only a real node can say is asked of
it: an image that is not there, a container over its memory limit, an eviction, and the
pod garbage collector removing finished pods.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import config

from localkube import images, realnode
from localkube.cluster import LocalCluster
from localkube.mockmodel import MockModel
from tests.e2e.support import TOKEN, Api, model, namespace, task, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        realnode.environment_ok() is not None, reason=str(realnode.environment_ok())
    ),
]
START_TIMEOUT = 30
BASE = images.BASE_IMAGE.split(":")


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    missing = realnode.environment_ok()
    assert missing is None, f"the real node cannot run here: {missing}"
    cluster = LocalCluster(
        tmp_path_factory.mktemp("real"),
        operator_args=("--start-timeout", str(START_TIMEOUT)),
        # Finished pods are collected at once, as busy clusters do.
        controller_args=("--terminated-pod-gc-threshold=1",),
        network=realnode.SECOND,
    )
    with cluster:
        yield cluster
        log = cluster.operator_log.read_text() if cluster.operator_log.exists() else ""
        assert "Traceback" not in log, log[-5000:]


@pytest.fixture
def api(real_cluster: LocalCluster) -> Iterator[Api]:
    api_client = config.new_client_from_config(config_file=str(real_cluster.kubeconfig))
    with namespace(api_client, TOKEN, prefix="real") as the_api:
        yield the_api
    api_client.close()


@pytest.fixture
def mock() -> Iterator[MockModel]:
    """A model service on the host, where pods reach it (the node's address)."""
    with MockModel.answering(
        "m1",
        {t: "right" for t in ("alpha", "beta", "gamma")},
        token=TOKEN,
        host=realnode.SECOND.node_ip,
    ) as server:
        yield server


def on_base(name: str, score: float, **env: str | float) -> dict:
    """A task whose script runs on our Debian base image."""
    spec = task(name, score, **env)
    spec["image"], spec["version"] = BASE
    return spec


def test_an_evaltask_runs_in_containers_of_our_images(real_cluster, api, mock):
    api.create_evaltask(
        "real", {"models": [model("m1", mock.url)], "tasks": [on_base("alpha", 0.75)]}
    )
    status = api.wait_phase("real", ("Succeeded", "Failed"), timeout=120)
    assert status["phase"] == "Succeeded", api.runs("real")
    record = api.run("real", "m1", "alpha")
    assert record["metrics"]["score"] == 0.75 and record["metrics"]["answered"] == 1.0
    assert mock.unauthorized == 0
    [pod] = [p for p in api.pods()] or [None]
    statuses = {s.name: s for s in (pod.status.init_container_statuses or [])}
    # Images by name as the node reports them (the runner has two tags: dev and 0.1.0).
    assert "eval-operator/runner:" in statuses["probe"].image
    assert statuses["task"].image.endswith("eval-operator/base:bookworm")
    assert "eval-operator/runner:" in pod.status.container_statuses[0].image
    # (Not `kubectl logs` here: this cluster's pod garbage collector and kubelet may have
    # removed the finished pod's log files already.)


def test_an_image_that_is_not_on_the_node_fails_with_the_kubelets_reason(api, mock):
    missing = on_base("alpha", 0.5)
    missing["image"], missing["version"] = "registry.invalid/evals/missing", "v1"
    api.create_evaltask("no-image", {"models": [model("m1", mock.url)], "tasks": [missing]})

    def says_why():
        runs = api.runs("no-image")
        message = runs[0].get("message", "") if runs else ""
        return ("ErrImagePull" in message or "ImagePullBackOff" in message) and message

    wait_for(says_why, 60, "the kubelet's reason in the run's message")
    api.wait_phase("no-image", ("Failed",), timeout=START_TIMEOUT + 60)
    message = api.run("no-image", "m1", "alpha")["message"]
    assert f"start timeout of {START_TIMEOUT}s" in message


def test_a_task_over_its_memory_limit_fails_saying_oomkilled(api, mock):
    hungry = on_base("alpha", 0.5)
    hungry["command"] = ["python", "-c", "x = bytearray(512 * 1024 * 1024); print(len(x))"]
    hungry["resources"] = {"limits": {"memory": "64Mi"}}
    api.create_evaltask("oom", {"models": [model("m1", mock.url)], "tasks": [hungry]})
    api.wait_phase("oom", ("Failed",), timeout=120)
    message = api.run("oom", "m1", "alpha")["message"]
    assert "exited with code 137 (OOMKilled)" in message


def test_an_evicted_pod_is_not_a_failed_attempt(api, mock):
    api.create_evaltask(
        "evicted", {"models": [model("m1", mock.url)], "tasks": [on_base("alpha", 0.5, SLEEP=15)]}
    )

    api.evict_running_task(timeout=90)
    status = api.wait_phase("evicted", ("Succeeded", "Failed"), timeout=180)
    assert status["phase"] == "Succeeded", api.runs("evicted")
    assert api.run("evicted", "m1", "alpha")["attempts"] == 1
    [job] = api.jobs()
    assert not job.status.failed


def test_results_stay_when_the_pod_garbage_collector_removes_finished_pods(api, mock):
    tasks = [on_base(t, s) for t, s in (("alpha", 0.1), ("beta", 0.2), ("gamma", 0.3))]
    api.create_evaltask("collected", {"models": [model("m1", mock.url)], "tasks": tasks})
    status = api.wait_phase("collected", ("Succeeded", "Failed"), timeout=180)
    assert status["phase"] == "Succeeded", api.runs("collected")
    # --terminated-pod-gc-threshold=1: the collector keeps at most one finished pod.
    wait_for(lambda: len(api.pods()) <= 1, 60, "the pod garbage collector")
    scores = {r["task"]: r["metrics"]["score"] for r in api.runs("collected")}
    assert scores == {"alpha": 0.1, "beta": 0.2, "gamma": 0.3}
    assert [r["state"] for r in api.status("collected")["runs"]] == ["Succeeded"] * 3
