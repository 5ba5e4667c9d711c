"""Handler tier: EvalRun records are durable, every wait is visible, refusals are reported.

Each test drives whole reconcile passes against the fake API, which answers as a real API
server does where these behaviours live (sorted map keys, late garbage collection,
admission refusals, distinct creation times).
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from eval_operator import constants, reconcile
from tests.handler.fake_api import FakeApi
from tests.handler.test_reconcile import NOW, job_for, metrics_of, record, run, spec


@pytest.fixture
def api():
    fake = FakeApi()
    fake.add_secret("key", {"token": "Bearer sk-very-secret"})
    return fake


def one_run(api, **extra):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",), **extra))
    run(api)
    return job_for(api, "m1", "t1")


def condition(api, type_):
    return next(c for c in api.status("et")["conditions"] if c["type"] == type_)


# --- the record --------------------------------------------------------------------------


def test_every_run_has_an_evalrun_owned_by_the_evaltask_and_owning_its_job(api):
    api.add_evaltask("et", spec())
    run(api)
    run(api)  # as the Jobs' creation asks: the pass that sees a Job records it
    assert len(api.evalruns) == 6
    for evalrun in api.evalruns.values():
        [owner] = evalrun["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("EvalTask", "uid-et")
        labels = evalrun["metadata"]["labels"]
        assert labels[constants.LABEL_FINGERPRINT] == evalrun["spec"]["fingerprint"]
    for (_, name), job in api.jobs.items():
        [owner] = job["metadata"]["ownerReferences"]
        evalrun = api.evalruns[("ns", name)]
        assert (owner["kind"], owner["uid"]) == ("EvalRun", evalrun["metadata"]["uid"])
        assert api.run_status(name)["job"] == name


def test_a_recorded_result_survives_its_pod_and_job_being_deleted(api):
    name = one_run(api)
    api.succeed(name, {"accuracy": 0.8})
    run(api)
    for key in [k for k in api.pods]:
        del api.pods[key]  # kubectl delete pod, or the pod garbage collector
    run(api)
    del api.jobs[("ns", name)]
    run(api)
    assert api.status("et")["runs"] == [
        {"model": "m1", "task": "t1", "state": "Succeeded", "score": 0.8}
    ]
    assert api.status("et")["phase"] == "Succeeded"
    assert metrics_of(api, "m1", "t1") == [("accuracy", 0.8)]
    assert api.calls.count("create_job") == 1


def test_metrics_keep_the_tasks_order_and_the_first_is_the_default_score(api):
    name = one_run(api)
    api.succeed(name, {"zeta": 0.25, "alpha": 0.75})
    run(api)
    run(api)  # read back through the API, which sorts map keys
    assert metrics_of(api, "m1", "t1") == [("zeta", 0.25), ("alpha", 0.75)]
    assert record(api, "m1", "t1")["score"] == 0.25
    assert api.status("et")["leaderboard"][0]["score"] == 0.25


def test_changing_primary_metric_rescores_without_rerunning(api):
    name = one_run(api)
    api.succeed(name, {"zeta": 0.25, "alpha": 0.75})
    run(api)
    edited = spec(models=("m1",), tasks=("t1",))
    edited["tasks"][0]["primaryMetric"] = "alpha"
    api.edit_spec("et", edited)
    run(api)
    assert record(api, "m1", "t1")["score"] == 0.75
    assert record(api, "m1", "t1")["state"] == "Succeeded"
    assert api.calls.count("create_job") == 1


def test_metric_weights_make_the_score_their_weighted_mean_and_rescore_on_edit(api):
    edited = spec(models=("m1",), tasks=("t1",))
    edited["tasks"][0]["metricWeights"] = {"alpha": 3, "zeta": 1}
    api.add_evaltask("et", edited)
    run(api)
    api.succeed(job_for(api, "m1", "t1"), {"zeta": 0.2, "alpha": 0.6})
    run(api)
    assert record(api, "m1", "t1")["score"] == pytest.approx((3 * 0.6 + 1 * 0.2) / 4)
    assert api.status("et")["leaderboard"][0]["score"] == pytest.approx(0.5)
    edited["tasks"][0]["metricWeights"] = {"zeta": 1}
    api.edit_spec("et", edited)
    run(api)
    assert record(api, "m1", "t1")["score"] == pytest.approx(0.2)
    # A weighted metric the run lacks: no score (as a primaryMetric the run lacks).
    edited["tasks"][0]["metricWeights"] = {"zeta": 1, "beta": 1}
    api.edit_spec("et", edited)
    run(api)
    assert record(api, "m1", "t1").get("score") is None
    assert api.calls.count("create_job") == 1, "weights rescore, they rerun nothing"


def test_deleting_an_evalrun_reruns_just_that_run(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    run(api)
    api.succeed(job_for(api, "m1", "t1"), {"a": 1.0})
    run(api)
    api.succeed(job_for(api, "m1", "t2"), {"a": 0.5})
    run(api)
    t1 = job_for(api, "m1", "t1")
    del api.evalruns[("ns", t1)]  # kubectl delete evalrun; its Job goes later
    run(api)
    assert api.status("et")["runs"][0]["state"] == "Pending"
    assert ("ns", t1) not in api.jobs, "the old Job is deleted before a new one"
    api.collect_garbage()
    run(api)
    assert ("ns", t1) in api.evalruns and ("ns", t1) in api.jobs
    assert api.calls.count("create_job") == 3
    assert record(api, "m1", "t2")["state"] == "Succeeded", "the other run is untouched"


def test_a_job_deleted_before_its_result_was_recorded_fails_the_run(api):
    name = one_run(api)
    api.start(name)
    run(api)
    del api.jobs[("ns", name)]
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed"
    assert "deleted before the run finished" in rec["message"]
    assert api.calls.count("create_job") == 1


def test_a_leftover_pod_with_the_jobs_name_is_not_the_jobs(api):
    name = one_run(api)
    api.succeed(name, {"a": 1.0})
    stale = copy.deepcopy(next(iter(api.pods.values())))
    api.pods.clear()
    stale["metadata"]["labels"][constants.LABEL_CONTROLLER_UID] = "uid-of-an-earlier-job"
    stale["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = "garbage"
    api.pods[("ns", "old-pod")] = stale
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed"
    assert "pod was gone" in rec["message"], "the job-name label alone does not match a pod"


# --- a finished EvalTask stays finished ----------------------------------------------------


def test_deleting_the_auth_secret_after_success_changes_nothing(api):
    name = one_run(api)
    api.succeed(name, {"a": 1.0})
    run(api)
    before = copy.deepcopy(api.status("et"))
    del api.secrets[("ns", "key")]
    run(api)
    status = api.status("et")
    assert status == before
    assert status["phase"] == "Succeeded" and "completionTime" in status
    assert condition(api, "SpecValid")["status"] == "True"


def test_a_missing_secret_makes_runs_still_to_start_wait(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    run(api)
    api.succeed(job_for(api, "m1", "t1"), {"a": 1.0})
    del api.secrets[("ns", "key")]
    run(api)
    assert condition(api, "SpecValid")["status"] == "True"
    assert api.status("et")["phase"] == "Running"
    assert len(api.jobs) == 1
    assert "Secret 'key' not found" in record(api, "m1", "t2")["message"]
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    run(api)
    assert len(api.jobs) == 2, "it starts once the Secret is back"


# --- refusals -----------------------------------------------------------------------------


def test_a_create_refused_after_the_dry_run_waits_and_the_others_go_on(api):
    api.refuse = lambda kind, body, dry_run: (
        (403, "Forbidden", "exceeded quota: jobs")
        if kind == "Job"
        and not dry_run
        and body["metadata"]["labels"][constants.LABEL_MODEL] == "m1"
        else None
    )
    api.add_evaltask("et", spec(models=("m1", "m2"), tasks=("t1",)))
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending", "a quota may free up (test_waits.py)"
    assert "exceeded quota: jobs" in rec["message"]
    run(api)
    assert record(api, "m2", "t1")["job"]
    assert [r["state"] for r in api.status("et")["runs"]] == ["Pending", "Pending"]


def test_a_job_the_server_finds_invalid_at_its_create_fails_its_run_at_once(api):
    api.refuse = lambda kind, body, dry_run: (
        (422, "Invalid", "ValidatingAdmissionPolicy 'no-latest' denied request")
        if kind == "Job" and not dry_run
        else None
    )
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed", "no wait fixes it"
    assert rec["message"] == (
        "the API server refused the Job: ValidatingAdmissionPolicy 'no-latest' denied request"
    )


# --- nothing waits silently --------------------------------------------------------------


def at(seconds):
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def test_a_probe_that_waits_says_so_and_a_timeout_fails_with_the_last_error(api):
    name = one_run(api)
    api.pending(name, probe={"running": {"startedAt": "2026-01-01T00:59:30Z"}})
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending"
    assert "waiting for the model service to answer" in rec["message"]
    assert "1800s (probeTimeoutSeconds)" in rec["message"]
    reachable = condition(api, "ModelReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "ModelUnreachable")
    assert "m1" in reachable["message"]
    api.fail(name, probe_message="gave no HTTP answer within 1800s; last error: ConnectError")
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed"
    assert "did not answer: gave no HTTP answer within 1800s" in rec["message"]
    assert "ConnectError" in rec["message"]
    assert condition(api, "ModelReachable")["status"] == "True"


def test_a_probe_within_its_grace_period_is_not_called_unreachable(api):
    name = one_run(api)
    api.pending(name, probe={"running": {"startedAt": "2026-01-01T00:59:58Z"}})
    outcome = run(api)
    assert condition(api, "ModelReachable")["status"] == "True"
    assert outcome.requeue_after == pytest.approx(3.0), "looked at again when the grace ends"


@pytest.mark.parametrize(
    "reason",
    ["ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError"],
)
def test_a_pod_that_cannot_start_says_why_at_once_and_fails_after_the_start_timeout(api, reason):
    name = one_run(api)
    pod = api.pending(name, task={"waiting": {"reason": reason, "message": "no such image"}})
    created = datetime.fromisoformat(
        api.pods[("ns", pod)]["metadata"]["creationTimestamp"].replace("Z", "+00:00")
    )
    config = reconcile.Config(runner_image="runner:test", start_timeout=120)
    reconcile.reconcile(api, "ns", "et", created + timedelta(seconds=30), config)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending"
    assert rec["message"] == f"task: {reason}: no such image"
    reconcile.reconcile(api, "ns", "et", created + timedelta(seconds=121), config)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed"
    assert rec["message"].startswith(f"task: {reason}: no such image")
    assert "start timeout of 120s" in rec["message"]
    assert ("ns", name) not in api.jobs, "its retries are stopped"


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        pytest.param("InvalidImageName", 'invalid reference format: "Repo:x"', id="a bad name"),
        pytest.param(
            "ErrImageNeverPull",
            'Container image "x:1" is not present with pull policy of Never',
            id="an image that will never be pulled",
        ),
        pytest.param(
            "CreateContainerConfigError",
            "couldn't find key token in Secret ns/model-key",
            id="a Secret without the key",
        ),
    ],
)
def test_a_pod_that_can_never_start_fails_at_once_with_the_kubelets_words(api, reason, message):
    name = one_run(api)
    pod = api.pending(name, task={"waiting": {"reason": reason, "message": message}})
    created = datetime.fromisoformat(
        api.pods[("ns", pod)]["metadata"]["creationTimestamp"].replace("Z", "+00:00")
    )
    config = reconcile.Config(runner_image="runner:test", start_timeout=600)
    reconcile.reconcile(api, "ns", "et", created + timedelta(seconds=5), config)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed", "no waiting out the start timeout"
    assert f"{reason}: {message}" in rec["message"]
    assert ("ns", name) not in api.jobs, "its retries are stopped"


def test_a_job_that_cannot_create_its_pod_says_why_and_fails_after_the_start_timeout(api):
    name = one_run(api)
    api.failed_creates[name] = ['pods "x" is forbidden: error looking up service account ns/runner']
    created = datetime.fromisoformat(
        api.jobs[("ns", name)]["metadata"]["creationTimestamp"].replace("Z", "+00:00")
    )
    config = reconcile.Config(runner_image="runner:test", start_timeout=60)
    reconcile.reconcile(api, "ns", "et", created + timedelta(seconds=10), config)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending"
    assert "cannot create its pod" in rec["message"]
    assert "service account ns/runner" in rec["message"]
    reconcile.reconcile(api, "ns", "et", created + timedelta(seconds=61), config)
    assert record(api, "m1", "t1")["state"] == "Failed"


def test_editing_the_template_replaces_jobs_that_have_not_started(api):
    s = spec(models=("m1", "m2"), tasks=("t1",))
    api.add_evaltask("et", s)
    run(api)
    m1, m2 = job_for(api, "m1", "t1"), job_for(api, "m2", "t1")
    api.start(m2)
    api.failed_creates[m1] = ["error looking up service account ns/wrong"]
    s2 = copy.deepcopy(s)
    s2["template"] = {"serviceAccountName": "right"}
    api.edit_spec("et", s2)
    patient = reconcile.Config(runner_image="runner:test", start_timeout=86400)
    reconcile.reconcile(api, "ns", "et", NOW, patient)
    assert ("ns", m1) not in api.jobs, "the Job that never started is replaced"
    assert ("ns", m2) in api.jobs, "a started Job runs on"
    api.collect_garbage()
    reconcile.reconcile(api, "ns", "et", NOW, patient)
    assert api.jobs[("ns", m1)]["spec"]["template"]["spec"]["serviceAccountName"] == "right"


# --- disruptions ------------------------------------------------------------------------


def test_an_evicted_pod_is_not_a_failed_attempt_and_says_evicted(api):
    name = one_run(api)
    api.evict(name)
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending"
    assert "evicted" in rec["message"] and "137" not in rec["message"]
    assert rec["attempts"] == 0
    job = api.jobs[("ns", name)]["spec"]
    assert job["podReplacementPolicy"] == "Failed"
    [rule] = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "Ignore"
    assert rule["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


# --- secrets --------------------------------------------------------------------------------


def test_every_secret_a_task_reads_is_redacted_even_with_surrounding_white_space(api):
    api.add_secret("hub", {"token": "  hf_abcdefgh12345\n"})
    s = spec(models=("m1",), tasks=("t1",))
    s["tasks"][0]["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}
    ]
    api.add_evaltask("et", s)
    run(api)
    api.fail(job_for(api, "m1", "t1"), log="401 for token hf_abcdefgh12345 on the hub")
    run(api)
    everything = json.dumps([list(api.evalruns.values()), list(api.evaltasks.values()), api.events])
    assert "hf_abcdefgh12345" not in everything
    assert "[redacted]" in record(api, "m1", "t1")["message"]


def literal(models):
    s = spec(models=models, tasks=("t1",))
    for m in s["models"]:
        m["auth"] = {"value": f"Bearer sk-{m['name']}-inline"}
    return s


def test_the_owned_auth_secret_follows_the_models_and_is_not_rewritten_each_pass(api):
    api.add_evaltask("et", literal(("m1", "m2")))
    run(api)
    [name] = [n for (_, n) in api.secrets if n != "key"]
    assert sorted(api.secrets[("ns", name)]["data"]) == ["m1", "m2"]
    run(api)
    assert api.calls.count("patch_secret") == 0
    api.edit_spec("et", literal(("m1",)))
    run(api)
    assert sorted(api.secrets[("ns", name)]["data"]) == ["m1"]
    run(api)
    assert api.calls.count("patch_secret") == 1


def test_a_same_named_secret_of_someone_else_is_left_alone(api):
    api.add_secret("et-eval-auth", {"m1": "theirs"})
    api.add_evaltask("et", literal(("m1",)))
    run(api)
    assert api.calls.count("patch_secret") == 0
    assert any(e["reason"] == "AuthSecretNotOwned" for e in api.events)


# --- smaller points ---------------------------------------------------------------------


def test_an_unknown_rerun_value_is_said_and_removed(api):
    name = one_run(api)
    api.succeed(name, {"a": 1.0})
    run(api)
    api.annotate("et", {constants.ANNOTATION_RERUN: "everything"})
    run(api)
    assert constants.ANNOTATION_RERUN not in api.evaltasks[("ns", "et")]["metadata"]["annotations"]
    [warning] = [e for e in api.events if e["reason"] == "UnknownRerunValue"]
    assert "'everything'" in warning["message"]
    assert api.calls.count("create_job") == 1


def test_events_are_posted_after_the_status_that_records_them(api):
    name = one_run(api)
    api.succeed(name, {"a": 1.0})
    api.calls.clear()
    run(api)
    recorded = api.calls.index("patch_evalrun_status")
    written = api.calls.index("patch_status")
    announced = api.calls.index("post_event")
    assert recorded < written < announced
    assert any(e["reason"] == "RunSucceeded" for e in api.events)


def test_a_url_the_runner_cannot_parse_is_spec_invalid_naming_the_field(api):
    s = spec(models=("m1",), tasks=("t1",))
    s["models"][0]["url"] = "http://exa\u200bmple.com/v1/chat/completions"
    api.add_evaltask("et", s)
    outcome = run(api)
    assert outcome.invalid
    valid = condition(api, "SpecValid")
    assert valid["status"] == "False"
    assert valid["message"].startswith("spec.models[0].url")
    assert api.jobs == {}


def test_the_job_deadline_is_the_timeout_plus_the_probe_timeout(api):
    s = spec(models=("m1", "m2"), tasks=("t1",), probeTimeoutSeconds=300)
    s["tasks"][0]["timeoutSeconds"] = 60
    api.add_evaltask("et", s)
    run(api)
    assert {j["spec"]["activeDeadlineSeconds"] for j in api.jobs.values()} == {360}


def test_without_timeout_seconds_the_operators_default_applies(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",), probe=False))
    config = reconcile.Config(runner_image="runner:test", default_timeout=7200)
    reconcile.reconcile(api, "ns", "et", NOW, config)
    [job] = api.jobs.values()
    assert job["spec"]["activeDeadlineSeconds"] == 7200


def test_status_is_written_even_when_a_run_is_refused(api):
    api.refuse = lambda kind, body, dry_run: (403, "Forbidden", "no") if kind == "EvalRun" else None
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    assert api.status("et")["runs"] == [{"model": "m1", "task": "t1", "state": "Pending"}]
    assert api.jobs == {}


def test_nothing_logs_a_spec_or_a_secret_at_any_level(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.add_evaltask("et", literal(("m1",)))
    run(api)
    api.fail(job_for(api, "m1", "t1"), log="auth Bearer sk-m1-inline rejected")
    run(api)
    bad = literal(("m1",))
    bad["tasks"][0]["env"] = [{"name": "EVAL_TASK_NAME", "value": "x"}]
    api.edit_spec("et", bad)
    run(api)
    assert caplog.records, "the passes logged something"
    assert "sk-m1-inline" not in caplog.text
    assert "run t1" not in caplog.text, "no spec (a task's args) in the log"


def test_a_mounted_secret_and_a_rotated_token_are_redacted_from_the_log_tail(api):
    """The task printed its token and a mounted Secret's value, then failed; the token
    was rotated before its failure was recorded: neither value reaches any object."""
    api.add_secret("key", {"token": "Bearer sk-before-rotation"})
    api.add_secret("files", {"pw": "mounted-s3cret", "other": "second-value"})
    s = spec(models=("m1",), tasks=("t1",))
    s["tasks"][0]["mounts"] = [
        {"name": "files", "mountPath": "/files", "source": {"secret": {"secretName": "files"}}}
    ]
    api.add_evaltask("et", s)
    run(api)
    api.fail(
        job_for(api, "m1", "t1"),
        log="Bearer sk-before-rotation\nmounted-s3cret second-value\nboom",
    )
    api.add_secret("key", {"token": "Bearer sk-after-rotation"})  # rotated
    run(api)
    message = record(api, "m1", "t1")["message"]
    assert "exited with code 2" in message and "boom" in message
    everything = json.dumps([list(api.evalruns.values()), list(api.evaltasks.values()), api.events])
    for value in ("sk-before-rotation", "mounted-s3cret", "second-value"):
        assert value not in everything, value
