"""End to end: results that survive a real cluster, and waits that are never silent.

Where a real component decides (the API server's admission and quota, the Job controller's
pod failure policy, the garbage collector), these tests let it decide and read the API.
"""

from __future__ import annotations

import socket
import time

import pytest
from kubernetes import client

from localkube import realnode
from localkube.mockmodel import MockModel
from tests.e2e.support import START_TIMEOUT, TOKEN, model, task, wait_for

pytestmark = pytest.mark.e2e


def condition(status, type_):
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def one(url, name="alpha", **env):
    return {"models": [model("m1", url)], "tasks": [task(name, 0.5, **env)]}


def test_a_result_survives_deleting_its_pod_and_job(api, models):
    api.create_evaltask("kept", one(models[0].url))
    api.wait_phase("kept", ("Succeeded",))
    [pod] = api.pods()
    api.core.delete_namespaced_pod(pod.metadata.name, api.ns)
    [job] = api.jobs()
    api.batch.delete_namespaced_job(job.metadata.name, api.ns, propagation_policy="Background")
    wait_for(lambda: not api.pods() and not api.jobs(), 30, "the pod and Job to be gone")
    # Give the operator the events of those deletions to react to.
    api.evaltask("kept")
    time.sleep(2)
    status = api.status("kept")
    assert status["phase"] == "Succeeded"
    assert status["runs"] == [{"model": "m1", "task": "alpha", "state": "Succeeded", "score": 0.5}]
    record = api.run("kept", "m1", "alpha")
    assert record["state"] == "Succeeded" and record["metrics"]["score"] == 0.5
    assert api.jobs() == [], "nothing ran again"


def test_deleting_the_auth_secret_after_success_keeps_the_evaltask_succeeded(api, models):
    api.create_evaltask("secret-gone", one(models[0].url))
    before = api.wait_phase("secret-gone", ("Succeeded",))
    api.core.delete_namespaced_secret("model-key", api.ns)
    api.patch_spec("secret-gone", {"tasks": [{**task("alpha", 0.5), "weight": 2}]})
    status = api.wait_phase("secret-gone", ("Succeeded", "Failed"))
    assert status["phase"] == "Succeeded"
    assert condition(status, "SpecValid")["status"] == "True"
    assert status["completionTime"] == before["completionTime"]


def test_deleting_one_evalrun_reruns_just_that_run(api, models):
    spec = {
        "models": [model("m1", models[0].url)],
        "tasks": [task("alpha", 0.1), task("beta", 0.2)],
    }
    api.create_evaltask("rerun-one", spec)
    api.wait_phase("rerun-one", ("Succeeded",))
    alpha, beta = api.run("rerun-one", "m1", "alpha"), api.run("rerun-one", "m1", "beta")
    api.custom.delete_namespaced_custom_object(
        "evaloperator.io", "v1alpha1", api.ns, "evalruns", alpha["name"]
    )

    def rerun_done():
        again = [r for r in api.runs("rerun-one") if r["task"] == "alpha"]
        return again and again[0]["state"] == "Succeeded" and again[0]["name"] == alpha["name"]

    wait_for(rerun_done, 60, "the deleted run to run again")
    assert models[0].requests == 3, "alpha ran twice, beta once"
    assert api.run("rerun-one", "m1", "beta")["completionTime"] == beta["completionTime"]


def test_a_quota_that_forbids_jobs_is_a_wait_with_the_servers_words_that_heals(api, models):
    api.core.create_namespaced_resource_quota(
        api.ns,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="no-jobs"),
            spec=client.V1ResourceQuotaSpec(hard={"count/jobs.batch": "0"}),
        ),
    )
    wait_for(
        lambda: api.core.read_namespaced_resource_quota("no-jobs", api.ns).status.hard,
        30,
        "the quota controller to count usage",
    )
    api.create_evaltask("quota", one(models[0].url))

    def waiting() -> dict | None:
        found = condition(api.status("quota"), "ReadyToStart")
        return found if found and found["status"] == "False" else None

    ready = wait_for(waiting, 30, "ReadyToStart=False")
    assert ready["reason"] == "JobRefused"
    assert "exceeded quota: no-jobs" in ready["message"]
    assert api.status("quota")["phase"] == "Pending"
    assert api.jobs() == []
    # The quota frees up: the operator finds it by itself (its backoff), no edit needed.
    api.core.delete_namespaced_resource_quota("no-jobs", api.ns)
    status = api.wait_phase("quota", ("Succeeded",), timeout=120)
    assert condition(status, "ReadyToStart")["status"] == "True"


def test_a_pod_that_cannot_be_created_says_why_then_fails_and_a_template_fix_replaces_it(
    api, models
):
    spec = one(models[0].url)
    spec["template"] = {"serviceAccountName": "nobody"}
    api.create_evaltask("no-sa", spec)

    def says_why():
        runs = api.runs("no-sa")
        return runs and "cannot create its pod" in runs[0].get("message", "") and runs[0]

    record = wait_for(says_why, 30, "the run to say why its pod is missing")
    assert record["state"] == "Pending"
    assert 'serviceaccount "nobody" not found' in record["message"]
    # Fixing the template replaces the Job that never started; the run then succeeds.
    api.core.create_namespaced_service_account(
        api.ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="runner"))
    )
    api.patch_spec("no-sa", {"template": {"serviceAccountName": "runner"}})
    status = api.wait_phase("no-sa", ("Succeeded", "Failed"), timeout=60)
    assert status["phase"] == "Succeeded", api.runs("no-sa")


def test_a_pod_that_never_gets_created_fails_after_the_start_timeout(api, models):
    spec = one(models[0].url)
    spec["template"] = {"serviceAccountName": "nobody"}
    api.create_evaltask("never", spec)
    started = time.monotonic()
    status = api.wait_phase("never", ("Failed",), timeout=START_TIMEOUT + 30)
    assert time.monotonic() - started >= START_TIMEOUT - 1
    record = api.run("never", "m1", "alpha")
    assert record["state"] == "Failed"
    assert f"start timeout of {START_TIMEOUT}s" in record["message"]
    assert status["failed"] == 1
    wait_for(lambda: not api.jobs(), 30, "its Job to be stopped")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((realnode.NODE_IP, 0))
        return int(s.getsockname()[1])


def test_the_probe_waits_in_the_pod_says_so_and_the_run_starts_once_the_model_answers(api):
    port = free_port()
    url = f"http://{realnode.NODE_IP}:{port}/v1/chat/completions"
    api.create_evaltask("late-model", one(url))

    def unreachable():
        status = api.status("late-model")
        return condition(status, "ModelReachable").get("status") == "False" and status

    status = wait_for(unreachable, 40, "ModelReachable=False while the probe waits")
    assert "m1" in condition(status, "ModelReachable")["message"]
    record = api.run("late-model", "m1", "alpha")
    assert record["state"] == "Pending"
    assert "waiting for the model service to answer" in record["message"]
    with MockModel.answering(
        "m1", {"alpha": "right"}, token=TOKEN, port=port, host=realnode.NODE_IP
    ) as late:
        status = api.wait_phase("late-model", ("Succeeded", "Failed"), timeout=60)
        assert status["phase"] == "Succeeded"
        assert late.unauthorized == 0
    assert condition(status, "ModelReachable")["status"] == "True"


def test_a_model_that_never_answers_fails_the_run_with_the_probes_last_error(api):
    url = f"http://{realnode.NODE_IP}:{free_port()}/v1/chat/completions"
    spec = {**one(url), "probeTimeoutSeconds": 3}
    api.create_evaltask("silent-model", spec)
    api.wait_phase("silent-model", ("Failed",), timeout=60)
    record = api.run("silent-model", "m1", "alpha")
    assert "the model service did not answer" in record["message"]
    assert "within 3s (probeTimeoutSeconds)" in record["message"]
    # The probe's last error, in the client's words (its end: a long message loses its middle).
    assert "Cannot connect to host" in record["message"]


def test_an_evicted_pod_is_replaced_and_not_counted_as_a_failed_attempt(api, models):
    api.create_evaltask("evicted", one(models[0].url, SLEEP=8))

    api.evict_running_task(timeout=30)
    status = api.wait_phase("evicted", ("Succeeded", "Failed"), timeout=90)
    assert status["phase"] == "Succeeded", api.runs("evicted")
    [job] = api.jobs()
    assert not job.status.failed, "the disruption is not a failure"
    record = api.run("evicted", "m1", "alpha")
    assert record["attempts"] == 1


def test_a_stale_results_file_on_a_persistent_volume_is_not_taken_for_the_runs(api, models):
    claim_on_host(api, "results")
    spec = one(models[0].url)
    spec["output"] = {"persistentVolumeClaim": {"claimName": "results"}}
    api.create_evaltask("pvc", spec)
    api.wait_phase("pvc", ("Succeeded",))
    # The task now exits 0 without writing: the previous metrics.json is still on the volume.
    silent = task("alpha", 0.5)
    silent["command"] = ["python", "-c", "print('wrote nothing')"]
    api.patch_spec("pvc", {"tasks": [silent]})
    status = api.wait_phase("pvc", ("Failed", "Succeeded"))
    assert status["phase"] == "Failed"
    assert "older than this run's pod" in api.run("pvc", "m1", "alpha")["message"]


def test_an_image_that_cannot_be_pulled_fails_after_the_start_timeout_saying_why(api, models):
    spec = one(models[0].url)
    spec["tasks"][0].pop("command")
    spec["tasks"][0]["image"] = "registry.example.com/evals/does-not-exist"
    api.create_evaltask("no-image", spec)
    api.wait_phase("no-image", ("Failed",), timeout=START_TIMEOUT + 60)
    message = api.run("no-image", "m1", "alpha")["message"]
    assert "ErrImagePull" in message or "ImagePullBackOff" in message, message
    assert f"could not start within the start timeout of {START_TIMEOUT}s" in message


def claim_on_host(api, name: str) -> None:
    """A PersistentVolumeClaim bound to a hostPath volume of its own on the node."""
    volume = f"{api.ns}-{name}"
    api.core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=volume),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": "1Gi"},
                access_modes=["ReadWriteOnce"],
                host_path=client.V1HostPathVolumeSource(
                    path=f"/tmp/eval-operator-e2e/{volume}", type="DirectoryOrCreate"
                ),
                storage_class_name="",
                persistent_volume_reclaim_policy="Delete",
                claim_ref=client.V1ObjectReference(namespace=api.ns, name=name),
            ),
        )
    )
    api.core.create_namespaced_persistent_volume_claim(
        api.ns,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
                storage_class_name="",
                volume_name=volume,
            ),
        ),
    )
    wait_for(
        lambda: (
            api.core.read_namespaced_persistent_volume_claim(name, api.ns).status.phase == "Bound"
        ),
        30,
        "the claim to be bound",
    )


def test_an_image_the_kubelet_cannot_parse_fails_at_once_with_its_reason(api, models):
    """The real kubelet says why (InvalidImageName, its words); the run fails then, not
    after the start timeout. (A Secret without the key is caught by the operator before
    any pod: tests/handler/test_records.py has the kubelet's message for it.)"""
    spec = one(models[0].url)
    spec["probe"] = False
    spec["tasks"][0]["image"] = "Eval-Operator/Base"  # upper case: no image reference
    api.create_evaltask("never", spec)
    status = api.wait_phase("never", ("Failed",), timeout=START_TIMEOUT + 60)
    [run] = api.runs("never")
    assert "InvalidImageName" in run["message"], run["message"]
    assert "waiting does not fix this" in run["message"]
    assert "start timeout" not in run["message"]
    assert status["failed"] == 1
