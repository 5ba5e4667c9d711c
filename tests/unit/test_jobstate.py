"""One Job and its pods -> the run's state and message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eval_operator import cache, constants, jobstate
from eval_runner import results

NAME = "et-m-t-01234567"
JOB_UID = "job-uid-1"
NOW = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
START_TIMEOUT = 300.0


def job(conditions=(), suspend=False, annotations=None, deadline=None, **status):
    doc = {
        "metadata": {
            "name": NAME,
            "uid": JOB_UID,
            "annotations": annotations or {},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"suspend": suspend},
        "status": {"startTime": "T1", **status},
    }
    if deadline:
        doc["spec"]["activeDeadlineSeconds"] = deadline
    doc["status"]["conditions"] = [
        {"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": "T9"}
        for t, r in conditions
    ]
    return doc


def pod(
    phase,
    task=None,
    collector=None,
    created="2026-01-01T00:08:00Z",
    reason=None,
    scheduled=None,
    probe=None,
    disrupted=False,
    owner=JOB_UID,
):
    status = {"phase": phase}
    status["initContainerStatuses"] = [
        {"name": constants.PROBE_CONTAINER, "state": probe or {"terminated": {"exitCode": 0}}}
    ]
    if task is not None:
        status["initContainerStatuses"].append({"name": constants.TASK_CONTAINER, "state": task})
    if collector is not None:
        status["containerStatuses"] = [{"name": constants.COLLECTOR_CONTAINER, "state": collector}]
    if reason:
        status["reason"], status["message"] = reason
    if scheduled:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": scheduled[0],
                "message": scheduled[1],
            }
        ]
    if disrupted:
        status["conditions"] = [
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "EvictionByEvictionAPI",
                "message": "Eviction API: evicting",
            }
        ]
    return {
        "metadata": {
            "name": f"{NAME}-x",
            "creationTimestamp": created,
            "labels": {
                "batch.kubernetes.io/job-name": NAME,
                constants.LABEL_CONTROLLER_UID: owner,
            },
            # As the Job controller makes its pods: controlled by the Job, by uid.
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": NAME,
                    "uid": owner,
                    "controller": True,
                }
            ],
        },
        "status": status,
    }


def exited(code, message="", reason="Error"):
    return {"terminated": {"exitCode": code, "reason": reason, "message": message}}


OK = exited(0, reason="Completed")
RESULT = results.encode({"accuracy": 0.85, "f1": 0.5})

CASES = [
    pytest.param(job(), [], "Pending", "", id="a Job without pods is pending"),
    pytest.param(
        job(active=1),
        [pod("Pending", {"running": {}}, {"waiting": {"reason": "PodInitializing"}})],
        "Running",
        "",
        id="a running task container is running, though the pod phase is Pending",
    ),
    pytest.param(
        job(active=1),
        [pod("Pending", {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}})],
        "Pending",
        "task: ImagePullBackOff: no such image",
        id="an image that cannot be pulled says so",
    ),
    pytest.param(
        job(active=1),
        [pod("Pending", scheduled=("Unschedulable", "0/3 nodes are available"))],
        "Pending",
        "pod not scheduled: Unschedulable 0/3 nodes are available",
        id="an unschedulable pod says why",
    ),
    pytest.param(
        job([("Complete", "")], succeeded=1, completionTime="T5"),
        [pod("Succeeded", OK, exited(0, RESULT, "Completed"))],
        "Succeeded",
        "",
        id="a completed Job yields the collector's metrics",
    ),
    pytest.param(
        job([("Complete", "")], succeeded=1),
        [],
        "Failed",
        "its pod was gone",
        id="a completed Job whose pod is gone cannot report metrics",
    ),
    pytest.param(
        job([("Complete", "")], succeeded=1),
        [pod("Succeeded", OK, exited(0, "garbage"))],
        "Failed",
        "collector: not a collector result",
        id="a corrupt collector result fails the run",
    ),
    pytest.param(
        job([("Failed", "BackoffLimitExceeded")], failed=1),
        [pod("Failed", exited(3, "step 1\nstep 2\nKeyError: 'answer'"))],
        "Failed",
        "the task container exited with code 3; last output:\nstep 1\nstep 2\nKeyError",
        id="a failing task gives its exit code and log tail",
    ),
    pytest.param(
        job([("Failed", "BackoffLimitExceeded")], failed=1),
        [pod("Failed", exited(137, "", "OOMKilled"))],
        "Failed",
        "the task container exited with code 137 (OOMKilled)",
        id="an OOM kill gives its reason",
    ),
    pytest.param(
        job([("Failed", "BackoffLimitExceeded")], failed=1),
        [pod("Failed", OK, exited(1, "metrics.json is empty"))],
        "Failed",
        "metrics.json is empty",
        id="a collector rejection gives what was wrong with metrics.json",
    ),
    pytest.param(
        job([("Failed", "DeadlineExceeded")], deadline=60, failed=1, active=0),
        [pod("Failed", exited(137))],
        "Failed",
        "the run exceeded its deadline of 60s (timeoutSeconds plus probeTimeoutSeconds)",
        id="a deadline names the timeout",
    ),
    pytest.param(
        job([("Failed", "BackoffLimitExceeded")], failed=3),
        [
            pod("Failed", exited(1, "a"), created="T1"),
            pod("Failed", exited(2, "b"), created="T2"),
            pod("Failed", exited(4, "c"), created="T3"),
        ],
        "Failed",
        "failed after 3 attempts: the task container exited with code 4",
        id="retries report attempts and the last failure",
    ),
    pytest.param(
        job([("Failed", "BackoffLimitExceeded")], failed=1),
        [pod("Failed", reason=("Evicted", "The node was low on memory."))],
        "Failed",
        "Evicted: The node was low on memory.",
        id="an evicted pod gives the eviction",
    ),
    pytest.param(
        job(suspend=True),
        [],
        "Pending",
        "waiting for admission",
        id="a Job suspended by someone else waits for admission",
    ),
    pytest.param(
        job(suspend=True, annotations={constants.ANNOTATION_SUSPENDED_BY_OPERATOR: "true"}),
        [],
        "Pending",
        "suspended (spec.suspend is true)",
        id="a Job we suspended says so",
    ),
    pytest.param(
        job([("FailureTarget", "BackoffLimitExceeded")], active=1),
        [pod("Running", OK, {"running": {}})],
        "Running",
        "",
        id="a FailureTarget is not the end until Failed",
    ),
    pytest.param(
        job(active=1),
        [pod("Pending", probe={"running": {"startedAt": "2026-01-01T00:09:00Z"}})],
        "Pending",
        "waiting for the model service to answer: the probe has waited 60s",
        id="a probe waiting past its grace says the model does not answer yet",
    ),
    pytest.param(
        job(active=1),
        [pod("Pending", probe={"running": {"startedAt": "2026-01-01T00:09:58Z"}})],
        "Pending",
        "",
        id="a probe within its grace is not reported",
    ),
    pytest.param(
        job([("Failed", "BackoffLimitExceeded")], failed=1),
        [pod("Failed", probe=exited(1, "no HTTP answer within 60s; last error: ConnectError"))],
        "Failed",
        "the model service did not answer: no HTTP answer within 60s; last error: ConnectError",
        id="a probe that timed out fails the run with its last error",
    ),
    pytest.param(
        job(active=0),
        [pod("Failed", exited(137), disrupted=True)],
        "Pending",
        "the pod was evicted (EvictionByEvictionAPI: Eviction API: evicting); a new pod",
        id="an evicted pod is replaced, not failed, and says evicted not 137",
    ),
    pytest.param(
        job([("Failed", "BackoffLimitExceeded")], failed=1),
        [pod("Failed", exited(137), disrupted=True)],
        "Failed",
        "the pod was evicted",
        id="a Job that failed after an eviction says evicted",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
                created="2026-01-01T00:04:00Z",
            )
        ],
        "Failed",
        "task: ErrImagePull: not found (could not start within the start timeout of 300s)",
        id="an image pull failing past the start timeout fails the run",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                {"waiting": {"reason": "CreateContainerConfigError", "message": "no key"}},
            )
        ],
        "Pending",
        "task: CreateContainerConfigError: no key",
        id="a config error within the start timeout waits with its reason",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                {
                    "waiting": {
                        "reason": "InvalidImageName",
                        "message": 'Failed to apply default image tag "r:t:latest": couldn\'t '
                        'parse image reference "r:t:latest": invalid reference format',
                    }
                },
            )
        ],
        "Failed",
        'task: InvalidImageName: Failed to apply default image tag "r:t:latest"',
        id="an invalid image name fails the run at once",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                {
                    "waiting": {
                        "reason": "ErrImageNeverPull",
                        "message": 'Container image "r:v1" is not present with pull policy of '
                        "Never",
                    }
                },
            )
        ],
        "Failed",
        'task: ErrImageNeverPull: Container image "r:v1" is not present',
        id="an image that is never pulled and not present fails the run at once",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                probe={
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": "couldn't find key token in Secret ns/model-key",
                    }
                },
            )
        ],
        "Failed",
        "probe: CreateContainerConfigError: couldn't find key token in Secret ns/model-key",
        id="a Secret without the probe's key fails the run at once",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": "couldn't find key level in ConfigMap ns/settings",
                    }
                },
            )
        ],
        "Failed",
        "task: CreateContainerConfigError: couldn't find key level in ConfigMap ns/settings",
        id="a ConfigMap without the task's key fails the run at once",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": 'secret "model-key" not found',
                    }
                },
            )
        ],
        "Pending",
        'task: CreateContainerConfigError: secret "model-key" not found',
        id="a missing Secret waits: it may yet be created",
    ),
]


@pytest.mark.parametrize(
    ("the_job", "pods", "state", "message"),
    CASES,
)
def test_describe(the_job, pods, state, message):
    outcome = jobstate.describe(the_job, pods, NOW, START_TIMEOUT)
    assert outcome.state == state
    if message:
        assert message in outcome.message
    else:
        assert outcome.message == ""


def test_success_carries_metrics_and_times():
    outcome = jobstate.describe(
        job([("Complete", "")], succeeded=1, completionTime="T5"),
        [pod("Succeeded", OK, exited(0, RESULT, "Completed"))],
        NOW,
        START_TIMEOUT,
    )
    assert outcome.metrics == (("accuracy", 0.85), ("f1", 0.5))
    assert (outcome.start_time, outcome.completion_time, outcome.attempts) == ("T1", "T5", 1)


def test_pods_are_matched_to_jobs_by_controller_uid_not_by_name():
    mine = pod("Failed", exited(9, "mine"))
    earlier = pod("Failed", exited(9, "an earlier Job"), owner="uid-of-the-earlier-job")
    by_job = jobstate.pods_by_job([earlier, mine])
    assert by_job == {JOB_UID: [mine], "uid-of-the-earlier-job": [earlier]}


def test_a_job_without_pods_reports_why_its_pod_cannot_be_created():
    outcome = jobstate.describe(
        job(), [], NOW, 3600, create_failure='pods "x" is forbidden: exceeded quota'
    )
    assert outcome.state == "Pending"
    assert outcome.message == 'the Job cannot create its pod: pods "x" is forbidden: exceeded quota'
    late = jobstate.describe(job(), [], NOW, 60, create_failure="exceeded quota")
    assert late.state == "Failed" and late.start_failed


def test_log_tail_keeps_the_last_lines_and_bounds_length():
    text = "\n".join(f"line {i}" for i in range(100))
    assert jobstate.log_tail(text).splitlines() == [f"line {i}" for i in range(90, 100)]
    assert len(jobstate.log_tail("x" * 5000)) <= jobstate.LOG_TAIL_CHARS + 3


@pytest.mark.parametrize(
    "reason,message",
    [
        pytest.param("InvalidImageName", "couldn't parse image reference", id="an invalid image"),
        pytest.param("ErrImageNeverPull", "not present", id="an image never pulled"),
        pytest.param(
            "CreateContainerConfigError",
            "Couldn't find key token in Secret ns/key",
            id="a missing key, as older kubelets write it",
        ),
    ],
)
def test_a_permanent_start_error_stops_the_job_without_waiting(reason, message):
    waiting = {"waiting": {"reason": reason, "message": message}}
    outcome = jobstate.describe(job(active=1), [pod("Pending", waiting)], NOW, START_TIMEOUT)
    assert (outcome.state, outcome.start_failed) == ("Failed", True)
    assert f"task: {reason}: {message}" in outcome.message


def forged(**meta):
    """A pod someone else made to look like the Job's, with a result of its own."""
    doc = pod(
        "Succeeded",
        OK,
        exited(0, results.encode({"accuracy": 1.0}), "Completed"),
        created="2026-01-01T00:09:00Z",
    )
    doc["metadata"].update(meta)
    return doc


def owner_ref(uid, controller=True):
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": NAME,
        "uid": uid,
        "controller": controller,
    }


@pytest.mark.parametrize(
    "impostor",
    [
        pytest.param(forged(ownerReferences=[]), id="a pod with the Job's labels but no owner"),
        pytest.param(
            forged(ownerReferences=[owner_ref(JOB_UID, controller=False)]),
            id="a pod owned by the Job but not controlled by it",
        ),
        pytest.param(
            forged(ownerReferences=[owner_ref("another-uid")]),
            id="a pod with the Job's labels controlled by another object",
        ),
        pytest.param(
            forged(
                labels={constants.LABEL_CONTROLLER_UID: "another-uid"},
                ownerReferences=[owner_ref(JOB_UID)],
            ),
            id="a pod whose controller-uid label disagrees with its owner",
        ),
    ],
)
def test_a_pod_not_controlled_by_the_job_is_never_its_result(impostor):
    mine = pod("Succeeded", OK, exited(0, RESULT, "Completed"))
    assert jobstate.pods_by_job([mine, impostor]).get(JOB_UID) == [mine]
    # Even given the impostor (the newest pod), the Job's result is its own pod's.
    outcome = jobstate.describe(
        job([("Complete", "")], succeeded=1), [mine, impostor], NOW, START_TIMEOUT
    )
    assert outcome.metrics == (("accuracy", 0.85), ("f1", 0.5))


def test_a_slimmed_pod_keeps_what_matching_it_to_its_job_needs():
    mine = pod("Succeeded", OK, exited(0, RESULT, "Completed"))
    mine["metadata"]["managedFields"] = [{"manager": "kubelet"}]
    slimmed = cache.slim(mine, spec=False)
    assert jobstate.pods_by_job([slimmed]) == {JOB_UID: [slimmed]}
