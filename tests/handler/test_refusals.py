"""Handler tier: a refusal no retry fixes ends as words on the object, and the rest goes on.

The fake answers as a real API server does here: a body holding inf is refused (JSON has
no inf), `inject` makes a verb on a kind answer 400/403/413/422/503 as admission, RBAC,
a schema rule or etcd would.
"""

from __future__ import annotations

import json

import pytest

from eval_operator import constants, records
from tests.handler.fake_api import FakeApi
from tests.handler.test_reconcile import job_for, record, run, spec


@pytest.fixture
def api():
    fake = FakeApi()
    fake.add_secret("key", {"token": "Bearer sk-very-secret"})
    return fake


def condition(api, type_, name="et"):
    return next((c for c in api.status(name).get("conditions", []) if c["type"] == type_), None)


def warnings(api, reason):
    return [e for e in api.events if e["type"] == "Warning" and e["reason"] == reason]


def run_name(api, model, task):
    [name] = [
        n
        for (_, n), r in api.evalruns.items()
        if r["spec"]["model"] == model and r["spec"]["task"] == task
    ]
    return name


# --- no number the API server cannot take ------------------------------------------------


def test_a_huge_score_in_a_heavy_task_gives_a_finite_leaderboard(api):
    s = spec(models=("m1",), tasks=("t1", "t2"))
    s["tasks"][0]["weight"] = 2  # 2 * 1e308 is inf: the mean must not be taken that way
    api.add_evaltask("et", s)
    run(api)
    api.succeed(job_for(api, "m1", "t1"), {"accuracy": 1e308})
    run(api)
    api.succeed(job_for(api, "m1", "t2"), {"accuracy": 1e308})
    run(api)
    status = api.status("et")
    assert status["phase"] == "Succeeded"
    [entry] = status["leaderboard"]
    assert entry["score"] == pytest.approx(1e308) and entry["tasks"] == 2
    json.dumps(status, allow_nan=False)  # every number finite


def test_metric_weights_over_huge_metrics_give_a_finite_score(api):
    s = spec(models=("m1",), tasks=("t1",))
    s["tasks"][0]["metricWeights"] = {"a": 2, "b": 1}
    api.add_evaltask("et", s)
    run(api)
    api.succeed(job_for(api, "m1", "t1"), {"a": 1e308, "b": 1e308})
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Succeeded"
    assert rec["score"] == pytest.approx(1e308)
    assert api.status("et")["runs"][0]["score"] == pytest.approx(1e308)


# --- a refused record ---------------------------------------------------------------------


def test_a_refused_record_fails_its_run_saying_why_and_the_others_go_on(api):
    api.add_evaltask("et", spec(models=("m1", "m2"), tasks=("t1", "t2")))
    run(api)
    m1 = job_for(api, "m1", "t1")
    api.succeed(m1, {"accuracy": 0.5})
    api.succeed(job_for(api, "m2", "t1"), {"accuracy": 0.7})
    words = "admission webhook denied the request: metric accuracy is not allowed"
    api.inject(
        "patch_status", "EvalRun", 400, words, name=m1, when=lambda b: b.get("metrics") != []
    )
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed"
    assert rec["message"].startswith(records.REFUSED_RECORD) and words in rec["message"]
    assert "metrics" not in rec or rec["metrics"] == []
    assert record(api, "m2", "t1")["state"] == "Succeeded"
    # Both chains go on: the refused run is final, its next task starts.
    assert {job_for(api, "m1", "t2"), job_for(api, "m2", "t2")} <= set(api.job_names())
    cond = condition(api, "RecordsWritten")
    assert (cond["status"], cond["reason"]) == ("False", "RecordWriteRefused")
    assert "m1/t1: recorded as Failed" in cond["message"]
    assert len(warnings(api, "RecordWriteRefused")) == 1
    [failed] = [e for e in api.events if e["reason"] == "RunFailed"]
    assert words in failed["message"]
    run(api)
    assert len(warnings(api, "RecordWriteRefused")) == 1, "said once, not once per pass"
    assert condition(api, "RecordsWritten")["status"] == "False", "until the run reruns"


def test_a_record_refused_even_as_failed_stays_unrecorded_is_said_and_written_later(api):
    api.add_evaltask("et", spec(models=("m1", "m2"), tasks=("t1",)))
    run(api)
    m1 = job_for(api, "m1", "t1")
    api.succeed(m1, {"accuracy": 0.5})
    api.succeed(job_for(api, "m2", "t1"), {"accuracy": 0.7})
    rbac = 'evalruns.evaloperator.io "x" is forbidden: cannot patch resource "evalruns/status"'
    fault = api.inject("patch_status", "EvalRun", 403, rbac, name=m1)
    run(api)
    assert fault.hits == 2, "the record, then what is left of it"
    assert record(api, "m1", "t1").get("state", "Pending") == "Pending"
    assert record(api, "m2", "t1")["state"] == "Succeeded"
    runs = {r["model"]: r["state"] for r in api.status("et")["runs"]}
    assert runs == {"m1": "Pending", "m2": "Succeeded"}, "the status shows what is recorded"
    cond = condition(api, "RecordsWritten")
    assert cond["status"] == "False" and "m1/t1: not recorded" in cond["message"]
    fault.times = 0  # an admin grants the patch
    run(api)
    assert record(api, "m1", "t1")["state"] == "Succeeded"
    cond = condition(api, "RecordsWritten")
    assert (cond["status"], cond["reason"]) == ("True", "RecordsAccepted")
    assert api.status("et")["phase"] == "Succeeded"


def test_a_running_run_whose_record_is_refused_fails_and_its_job_stops(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    run(api)
    first = job_for(api, "m1", "t1")
    api.start(first)
    api.inject(
        "patch_status",
        "EvalRun",
        422,
        "status.progress: Invalid value",
        name=first,
        when=lambda b: b.get("state") == "Running",
    )
    run(api)
    assert record(api, "m1", "t1")["state"] == "Failed"
    assert first not in api.job_names(), "nothing would record it: it stops"
    api.collect_garbage()
    run(api)
    assert job_for(api, "m1", "t2") in api.job_names(), "its chain goes on"


# --- a refused status ---------------------------------------------------------------------


def test_a_refused_status_is_replaced_by_a_small_one_that_says_so(api):
    api.add_evaltask("et", spec(models=("m1", "m2"), tasks=("t1",)))
    words = "Request entity too large: limit is 3145728"
    fault = api.inject("patch_status", "EvalTask", 413, words, when=lambda b: "runs" in b)
    outcome = run(api)
    assert outcome is not None and outcome.status_written
    assert len(api.jobs) == 2, "the runs start all the same"
    status = api.status("et")
    assert "runs" not in status and "leaderboard" not in status
    assert (status["progress"], status["total"], status["phase"]) == ("0/2", 2, "Pending")
    cond = condition(api, "RecordsWritten")
    assert (cond["status"], cond["reason"]) == ("False", "StatusWriteRefused")
    assert words in cond["message"]
    assert condition(api, "SpecValid")["status"] == "True", "the other conditions stay"
    assert [e["message"] for e in warnings(api, "StatusWriteRefused")] == [cond["message"]]
    since = cond["lastTransitionTime"]
    for name in api.job_names():
        api.succeed(name, {"accuracy": 0.5})
    run(api)
    assert len(warnings(api, "StatusWriteRefused")) == 1, "said once, not once per pass"
    assert condition(api, "RecordsWritten")["lastTransitionTime"] == since
    assert api.status("et")["phase"] == "Succeeded"
    fault.times = 0
    run(api)
    status = api.status("et")
    assert len(status["runs"]) == 2 and len(status["leaderboard"]) == 2
    cond = condition(api, "RecordsWritten")
    assert (cond["status"], cond["reason"]) == ("True", "RecordsAccepted")


def test_a_status_refused_even_small_keeps_its_condition_alone(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    api.inject(
        "patch_status", "EvalTask", 422, "status: Invalid value", when=lambda b: "phase" in b
    )
    run(api)
    status = api.status("et")
    assert set(status) == {"observedGeneration", "conditions"}
    [cond] = status["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == (
        "RecordsWritten",
        "False",
        "StatusWriteRefused",
    )
    assert len(api.jobs) == 1


# --- a name that is taken -------------------------------------------------------------------


def finish(api, model, task, metrics):
    api.succeed(job_for(api, model, task), metrics)
    run(api)


def test_an_evaltask_applied_again_after_an_orphaning_delete_takes_up_its_runs(api):
    """`kubectl delete et X --cascade=orphan`, then `kubectl apply` X again: a finished run
    is adopted with its result, an unfinished one replaced; nothing waits silently."""
    s = spec(models=("m1",), tasks=("t1", "t2"))
    api.add_evaltask("et", s)
    run(api)
    finish(api, "m1", "t1", {"accuracy": 0.75})
    api.start(job_for(api, "m1", "t2"))
    run(api)
    first, second = run_name(api, "m1", "t1"), run_name(api, "m1", "t2")
    kept_uid = api.evalruns[("ns", first)]["metadata"]["uid"]
    assert record(api, "m1", "t2")["state"] == "Running"

    api.delete_evaltask("et", orphan=True)
    api.add_evaltask("et", s, uid="uid-et-again")

    def waiting():
        return condition(api, "Progressing")["message"]

    run(api)  # t1's EvalRun is taken: its name is held by the former EvalTask's
    adopted = api.evalruns[("ns", first)]
    assert adopted["metadata"]["uid"] == kept_uid, "the finished record is adopted, not redone"
    assert [r["uid"] for r in adopted["metadata"]["ownerReferences"]] == ["uid-et-again"]
    assert adopted["metadata"]["labels"][constants.LABEL_EVALTASK_UID] == "uid-et-again"
    assert record(api, "m1", "t1")["metrics"] == [{"name": "accuracy", "value": 0.75}]
    assert api.status("et")["runs"][0] == {
        "model": "m1",
        "task": "t1",
        "state": "Succeeded",
        "score": 0.75,
    }
    old_run = api.evalruns[("ns", second)]["metadata"]["uid"]
    run(api)  # t2's is held too, unfinished: replaced
    assert ("ns", second) not in api.evalruns
    assert "replacing the EvalRun left by an earlier EvalTask" in waiting()
    run(api)  # ours is made; the former one's Job still holds the name (GC comes later)
    assert api.evalruns[("ns", second)]["metadata"]["uid"] != old_run
    assert "replacing the Job left by an earlier EvalRun" in record(api, "m1", "t2")["message"]
    assert second not in api.job_names()
    run(api)
    job = api.jobs[("ns", second)]
    [owner] = job["metadata"]["ownerReferences"]
    assert owner["uid"] == api.evalruns[("ns", second)]["metadata"]["uid"]
    finish(api, "m1", "t2", {"accuracy": 0.25})
    status = api.status("et")
    assert status["phase"] == "Succeeded"
    assert [r["score"] for r in status["runs"]] == [0.75, 0.25]
    # t1 once; t2, then the 409 while the former Job held its name, then ours.
    assert api.calls.count("create_job") == 4


def desired_name(s, model, task, evaltask="et"):
    from eval_operator import plan
    from eval_operator import spec as spec_mod

    [found] = [
        r.name
        for r in plan.desired_runs(spec_mod.parse_spec(s), evaltask)
        if (r.model.name, r.task.name) == (model, task)
    ]
    return found


def test_a_name_held_by_someone_elses_evalrun_is_said_and_left_alone(api):
    s = spec(models=("m1", "m2"), tasks=("t1",))
    name = desired_name(s, "m1", "t1")
    api.evalruns[("ns", name)] = theirs = {
        "apiVersion": constants.API_VERSION,
        "kind": constants.EVALRUN.kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": "someone-elses",
            "resourceVersion": "1",
            "labels": {"team": "b"},
            "ownerReferences": [{"kind": "Workflow", "name": "wf", "uid": "w", "controller": True}],
        },
        "spec": {"model": "m1", "task": "t1", "fingerprint": "f"},
    }
    snapshot = json.dumps(theirs, sort_keys=True)
    api.add_evaltask("et", s)
    run(api)
    run(api)
    progressing = condition(api, "Progressing")
    assert (
        f"the name {name!r} is taken by an EvalRun that is not this EvalTask's"
        in (progressing["message"])
    )
    assert "controlled by Workflow 'wf'" in progressing["message"]
    assert json.dumps(api.evalruns[("ns", name)], sort_keys=True) == snapshot, "left alone"
    assert "patch_evalrun" not in api.calls and "delete_evalrun" not in api.calls
    assert job_for(api, "m2", "t1") and len(api.jobs) == 1, "the other model goes on"


def test_a_name_held_by_someone_elses_job_is_said_on_the_run(api):
    s = spec(models=("m1",), tasks=("t1",))
    name = desired_name(s, "m1", "t1")
    api.jobs[("ns", name)] = {
        "metadata": {"name": name, "namespace": "ns", "uid": "their-job", "labels": {}},
        "spec": {},
        "status": {},
    }
    api.add_evaltask("et", s)
    run(api)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending"
    assert f"the name {name!r} is taken by a Job that is not this run's" in rec["message"]
    assert "not made by eval-operator" in rec["message"]
    assert api.jobs[("ns", name)]["metadata"]["uid"] == "their-job"
    writes = api.calls.count("patch_evalrun_status")
    run(api)
    assert api.calls.count("patch_evalrun_status") == writes, "said once, not rewritten"
    assert "delete_job" not in api.calls


# --- the rerun request ----------------------------------------------------------------------


def failed_once(api, tasks=("t1", "t2")):
    api.add_evaltask("et", spec(models=("m1",), tasks=tasks))
    for outcome in ("fail", *(["ok"] * (len(tasks) - 1))):
        run(api)
        [name] = [n for (_, n), j in api.jobs.items() if not j["status"]]
        api.fail(name) if outcome == "fail" else api.succeed(name, {"a": 1.0})
    run(api)
    assert api.status("et")["phase"] == "Failed"


def annotations(api):
    return api.evaltasks[("ns", "et")]["metadata"]["annotations"]


def test_a_rerun_request_is_kept_until_its_deletions_are_made(api):
    failed_once(api)
    failed = run_name(api, "m1", "t1")
    api.annotate("et", {constants.ANNOTATION_RERUN: constants.RERUN_FAILED})
    api.inject("delete", "EvalRun", 503, "etcdserver: leader changed", times=1)
    with pytest.raises(Exception, match="leader changed"):
        run(api)
    assert annotations(api)[constants.ANNOTATION_RERUN] == "failed", "the request is not lost"
    run(api)
    assert constants.ANNOTATION_RERUN not in annotations(api)
    assert ("ns", failed) not in api.evalruns
    for _ in range(3):
        run(api)
        for name in [n for (_, n), j in api.jobs.items() if not j["status"]]:
            api.succeed(name, {"a": 1.0})
    run(api)
    assert api.status("et")["phase"] == "Succeeded"


@pytest.mark.parametrize("mode", ["failed", "all"])
def test_a_rerun_request_seen_again_reruns_nothing_twice(api, mode):
    failed_once(api)
    jobs_before = api.calls.count("create_job")
    api.annotate("et", {constants.ANNOTATION_RERUN: mode})
    # Its removal fails three times: three passes see the request after its deletions.
    api.inject("patch", "EvalTask", 503, "etcdserver: request timed out", times=3)
    for _ in range(3):
        with pytest.raises(Exception, match="timed out"):
            run(api)
        api.collect_garbage()
    deleted = api.calls.count("delete_evalrun")
    assert deleted == (1 if mode == "failed" else 2)
    assert api.calls.count("create_evalrun") == 2, "nothing created while it is there"
    run(api)
    assert constants.ANNOTATION_RERUN not in annotations(api)
    for _ in range(4):
        run(api)
        for name in [n for (_, n), j in api.jobs.items() if not j["status"]]:
            api.succeed(name, {"a": 1.0})
    run(api)
    assert api.calls.count("delete_evalrun") == deleted
    assert api.calls.count("create_job") - jobs_before == deleted, "each rerun once"
    assert api.status("et")["phase"] == "Succeeded"
