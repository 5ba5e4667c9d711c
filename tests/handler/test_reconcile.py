"""Handler tier: whole reconcile passes against the fake API (tests/handler/fake_api.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from eval_operator import constants, reconcile
from tests.handler.fake_api import FakeApi

NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
CONFIG = reconcile.Config(runner_image="runner:test")


def spec(models=("m1", "m2"), tasks=("t1", "t2", "t3"), **extra):
    return {
        "models": [
            {
                "name": m,
                "url": f"http://127.0.0.1:9/{m}/v1/chat/completions",
                "auth": {"secretRef": {"name": "key", "key": "token"}},
            }
            for m in models
        ],
        "tasks": [{"name": t, "image": "evals/x", "args": [f"run {t}"]} for t in tasks],
        **extra,
    }


@pytest.fixture
def api():
    fake = FakeApi()
    fake.add_secret("key", {"token": "Bearer sk-very-secret"})
    return fake


def run(api, name="et"):
    return reconcile.reconcile(api, "ns", name, NOW, CONFIG)


def job_for(api, model, task):
    [name] = [
        n
        for (_, n), j in api.jobs.items()
        if j["metadata"]["labels"][constants.LABEL_MODEL] == model
        and j["metadata"]["labels"][constants.LABEL_TASK] == task
    ]
    return name


def record(api, model, task):
    """The EvalRun status of a run: its durable record."""
    [name] = [
        n
        for (_, n), r in api.evalruns.items()
        if r["spec"]["model"] == model and r["spec"]["task"] == task
    ]
    return api.run_status(name)


def metrics_of(api, model, task):
    return [(m["name"], m["value"]) for m in record(api, model, task).get("metrics") or []]


def test_first_pass_starts_the_first_task_of_every_model(api):
    api.add_evaltask("et", spec())
    run(api)
    assert len(api.jobs) == 2
    assert {
        (
            j["metadata"]["labels"][constants.LABEL_MODEL],
            j["metadata"]["labels"][constants.LABEL_TASK],
        )
        for j in api.jobs.values()
    } == {("m1", "t1"), ("m2", "t1")}
    status = api.status("et")
    assert status["progress"] == "0/6"
    assert status["total"] == 6
    assert [r["state"] for r in status["runs"]] == ["Pending"] * 6
    assert status["phase"] == "Pending"


def test_chain_runs_serially_in_task_order_and_survives_a_failure(api):
    api.add_evaltask("et", spec(models=("m1",)))
    run(api)
    first = job_for(api, "m1", "t1")
    api.start(first)
    run(api)
    assert api.job_names() == [first], "no second Job while the first runs"
    assert api.status("et")["runs"][0]["state"] == "Running"
    assert api.status("et")["phase"] == "Running"
    api.fail(first, exit_code=3, log="line1\nTraceback: ValueError: bad input")
    run(api)
    second = job_for(api, "m1", "t2")
    status = api.status("et")
    assert status["runs"][0]["state"] == "Failed"
    assert "exited with code 3" in record(api, "m1", "t1")["message"]
    assert "ValueError: bad input" in record(api, "m1", "t1")["message"]
    api.succeed(second, {"accuracy": 0.5})
    run(api)
    third = job_for(api, "m1", "t3")
    api.succeed(third, {"accuracy": 0.7, "f1": 0.1})
    run(api)
    status = api.status("et")
    assert [r["state"] for r in status["runs"]] == ["Failed", "Succeeded", "Succeeded"]
    assert metrics_of(api, "m1", "t3") == [("accuracy", 0.7), ("f1", 0.1)]
    assert status["runs"][2] == {"model": "m1", "task": "t3", "state": "Succeeded", "score": 0.7}
    assert status["phase"] == "Failed"
    assert status["progress"] == "3/3"
    assert (status["completed"], status["succeeded"], status["failed"]) == (3, 2, 1)
    assert status["leaderboard"] == [
        {"model": "m1", "score": pytest.approx(0.6), "rank": 1, "tasks": 2}
    ]
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert (complete["status"], complete["reason"]) == ("True", "RunsFailed")
    assert any(e["reason"] == "RunFailed" for e in api.events)


def test_malformed_metrics_fail_the_run_with_the_collectors_words(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    api.fail(
        job_for(api, "m1", "t1"),
        collector_message="metrics.json: metrics[0].value ('accuracy') is a str",
    )
    run(api)
    [entry] = api.status("et")["runs"]
    assert entry["state"] == "Failed"
    assert record(api, "m1", "t1")["message"] == (
        "metrics.json: metrics[0].value ('accuracy') is a str"
    )


def test_a_restarted_operator_neither_duplicates_nor_loses(api):
    api.add_evaltask("et", spec())
    run(api)
    jobs_before = api.job_names()
    api.succeed(job_for(api, "m1", "t1"), {"accuracy": 1.0})
    # Two passes in a row (as after a restart) see the same world and create once.
    run(api)
    run(api)
    assert len(api.jobs) == len(jobs_before) + 1
    assert api.calls.count("create_job") == 3
    assert api.calls.count("create_evalrun") == 6, "one EvalRun per run, made once"
    assert metrics_of(api, "m1", "t1") == [("accuracy", 1.0)]


def test_results_outlive_their_jobs(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    name = job_for(api, "m1", "t1")
    api.succeed(name, {"accuracy": 0.25})
    run(api)
    del api.jobs[("ns", name)]  # e.g. someone deleted the finished Job
    run(api)
    [entry] = api.status("et")["runs"]
    assert (entry["state"], entry["score"]) == ("Succeeded", 0.25)
    assert api.calls.count("create_job") == 1, "a finished run never runs twice"


def test_status_is_written_only_when_it_changes(api):
    api.add_evaltask("et", spec())
    run(api)
    writes = api.calls.count("patch_status")
    outcome = run(api)
    assert outcome.status_written is False
    assert api.calls.count("patch_status") == writes


def test_an_invalid_spec_creates_nothing_and_says_which_field(api):
    bad = spec()
    bad["tasks"][1]["env"] = [{"name": "EVAL_MODEL_NAME", "value": "x"}]
    api.add_evaltask("et", bad)
    outcome = run(api)
    assert outcome.invalid
    assert api.jobs == {} and api.dry_runs == []
    status = api.status("et")
    assert status["phase"] == "Failed"
    valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
    assert valid["status"] == "False"
    assert valid["reason"] == "ReservedEnvName"
    assert "spec.tasks[1].env" in valid["message"]
    assert [e["type"] for e in api.events] == ["Warning"]
    run(api)
    assert len(api.events) == 1, "the same problem is reported once"


def test_fixing_the_spec_in_a_new_generation_starts_the_task(api):
    bad = spec(models=("m1",))
    bad["models"][0]["url"] = "not-a-url"
    api.add_evaltask("et", bad)
    run(api)
    assert api.jobs == {}
    api.edit_spec("et", spec(models=("m1",)))
    run(api)
    assert len(api.jobs) == 1
    valid = next(c for c in api.status("et")["conditions"] if c["type"] == "SpecValid")
    assert (valid["status"], valid["observedGeneration"]) == ("True", 2)


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        pytest.param(
            lambda s, a: s["models"][0]["auth"]["secretRef"].update(name="nope"),
            "spec.models[0].auth.secretRef",
            "SecretNotFound",
            id="a missing auth Secret is named",
        ),
        pytest.param(
            lambda s, a: s["models"][0]["auth"]["secretRef"].update(key="nokey"),
            "spec.models[0].auth.secretRef",
            "SecretKeyNotFound",
            id="a missing key in the auth Secret is named",
        ),
        pytest.param(
            lambda s, a: s["tasks"][0].update(
                env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]
            ),
            "spec.tasks[0].env[0].valueFrom.configMapKeyRef",
            "ConfigMapNotFound",
            id="a missing ConfigMap behind an env var is named",
        ),
        pytest.param(
            lambda s, a: s["tasks"][0].update(
                mounts=[
                    {"name": "scripts", "mountPath": "/s", "source": {"configMap": {"name": "cm"}}}
                ]
            ),
            "spec.tasks[0].mounts[0].source.configMap",
            "ConfigMapNotFound",
            id="a missing ConfigMap behind a mount is named",
        ),
        pytest.param(
            lambda s, a: s["tasks"][0].update(
                mounts=[
                    {"name": "data", "mountPath": "/s", "source": {"secret": {"secretName": "x"}}}
                ]
            ),
            "spec.tasks[0].mounts[0].source.secret",
            "SecretNotFound",
            id="a missing Secret behind a mount is named",
        ),
        pytest.param(
            lambda s, a: s["models"][0].update(
                tls={"caConfigMap": {"name": "model-ca", "key": "ca.crt"}}
            ),
            "spec.models[0].tls.caConfigMap",
            "ConfigMapNotFound",
            id="a missing CA ConfigMap is named",
        ),
        pytest.param(
            lambda s, a: (
                a.add_configmap("model-ca", {"other.pem": "x"}),
                s["models"][0].update(tls={"caConfigMap": {"name": "model-ca", "key": "ca.crt"}}),
            ),
            "spec.models[0].tls.caConfigMap",
            "ConfigMapKeyNotFound",
            id="a missing key in the CA ConfigMap is named",
        ),
    ],
)
def test_references_only_the_operator_can_check(api, mutate, field, reason):
    s = spec()
    mutate(s, api)
    api.add_evaltask("et", s)
    run(api)
    assert api.jobs == {}
    status = api.status("et")
    assert status["phase"] == "Pending", "the runs wait for it (test_waits.py)"
    ready = next(c for c in status["conditions"] if c["type"] == "ReadyToStart")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert ready["message"].startswith(field)


def test_optional_references_may_be_missing(api):
    s = spec(models=("m1",), tasks=("t1",))
    s["tasks"][0]["env"] = [
        {
            "name": "X",
            "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
        }
    ]
    api.add_evaltask("et", s)
    run(api)
    assert len(api.jobs) == 1


def test_a_job_the_server_rejects_fails_the_spec_with_the_field(api):
    s = spec(models=("m1",), tasks=("t1", "t2"))
    s["tasks"][1]["mounts"] = [
        {"name": "data", "mountPath": "/data", "source": {"hostPath": {"path": ""}}}
    ]
    api.add_evaltask("et", s)
    api.reject = lambda job: (
        [{"field": "spec.template.spec.volumes[2].hostPath.path", "message": "Required value"}]
        if len(job["spec"]["template"]["spec"]["volumes"]) > 2
        else []
    )
    run(api)
    assert api.jobs == {}
    valid = next(c for c in api.status("et")["conditions"] if c["type"] == "SpecValid")
    assert valid["reason"] == "JobRejected"
    assert valid["message"].startswith("spec.tasks[1].mounts[0]")
    assert "hostPath.path: Required value" in valid["message"]
    dry_runs = api.calls.count("dry_run_job")
    run(api)
    assert api.calls.count("dry_run_job") == dry_runs, "one dry-run per generation"


def test_the_dry_run_covers_every_model_and_task_once_per_generation(api):
    api.add_evaltask("et", spec(models=("m1", "m2", "m3"), tasks=("t1", "t2")))
    run(api)
    assert api.calls.count("dry_run_job") == max(3, 2)
    tried = [
        (
            j["metadata"]["labels"][constants.LABEL_MODEL],
            j["metadata"]["labels"][constants.LABEL_TASK],
        )
        for j in api.dry_runs
    ]
    assert {m for m, _ in tried} == {"m1", "m2", "m3"} and {t for _, t in tried} == {"t1", "t2"}
    run(api)
    assert api.calls.count("dry_run_job") == 3


def test_literal_auth_goes_into_an_owned_secret_never_into_env(api):
    s = spec(models=("m1",), tasks=("t1",))
    s["models"][0]["auth"] = {"value": "Bearer sk-inline-123"}
    api.add_evaltask("et", s)
    run(api)
    [job] = api.jobs.values()
    env = job["spec"]["template"]["spec"]["initContainers"][1]["env"]
    assert "sk-inline-123" not in repr(job)
    header = next(e for e in env if e["name"] == constants.ENV_AUTH_HEADER_VALUE)
    ref = header["valueFrom"]["secretKeyRef"]
    secret = api.secrets[("ns", ref["name"])]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-et"
    assert ref["key"] in secret["data"]
    warnings = [e for e in api.events if e["reason"] == "LiteralAuthValue"]
    assert len(warnings) == 1 and "secretRef" in warnings[0]["message"]
    assert all("sk-inline-123" not in e["message"] for e in api.events)


def test_secret_values_are_redacted_from_run_messages(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    api.fail(job_for(api, "m1", "t1"), log="calling with key sk-very-secret ... 401")
    run(api)
    message = record(api, "m1", "t1")["message"]
    assert "sk-very-secret" not in message
    assert "[redacted]" in message
    assert all("sk-very-secret" not in e["message"] for e in api.events)


def test_editing_one_task_reruns_only_its_runs(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    run(api)
    api.succeed(job_for(api, "m1", "t1"), {"a": 1.0})
    run(api)
    api.succeed(job_for(api, "m1", "t2"), {"a": 2.0})
    run(api)
    t1_job = job_for(api, "m1", "t1")
    edited = spec(models=("m1",), tasks=("t1", "t2"))
    edited["tasks"][1]["args"] = ["run t2 --harder"]
    api.edit_spec("et", edited)
    run(api)  # deletes the stale Job, creates nothing in the same pass
    assert api.job_names() == [t1_job]
    run(api)
    new_t2 = job_for(api, "m1", "t2")
    assert api.jobs[("ns", new_t2)]["spec"]["template"]["spec"]["initContainers"][1]["args"] == [
        "run t2 --harder"
    ]
    runs = api.status("et")["runs"]
    assert runs[0] == {"model": "m1", "task": "t1", "state": "Succeeded", "score": 1.0}
    assert runs[1] == {"model": "m1", "task": "t2", "state": "Pending"}
    assert metrics_of(api, "m1", "t2") == []
    assert api.calls.count("create_job") == 3


def test_changing_only_weight_recomputes_the_leaderboard_without_rerunning(api):
    s = spec(models=("m1", "m2"), tasks=("t1", "t2"))
    api.add_evaltask("et", s)
    values = {("m1", "t1"): 1.0, ("m1", "t2"): 0.0, ("m2", "t1"): 0.0, ("m2", "t2"): 0.8}
    for _ in range(3):
        run(api)
        for (m, t), v in values.items():
            name = next(
                (
                    n
                    for (_, n), j in api.jobs.items()
                    if j["metadata"]["labels"][constants.LABEL_MODEL] == m
                    and j["metadata"]["labels"][constants.LABEL_TASK] == t
                    and not j["status"]
                ),
                None,
            )
            if name:
                api.succeed(name, {"acc": v})
    run(api)
    assert [e["model"] for e in api.status("et")["leaderboard"]] == ["m1", "m2"]
    creates = api.calls.count("create_job")
    s2 = copy.deepcopy(s)
    s2["tasks"][1]["weight"] = 3
    api.edit_spec("et", s2)
    run(api)
    board = api.status("et")["leaderboard"]
    assert [e["model"] for e in board] == ["m2", "m1"]
    assert board[0]["score"] == pytest.approx(0.6)
    assert api.calls.count("create_job") == creates
    assert "delete_job" not in api.calls


def test_parallelism_one_keeps_one_chain_busy(api):
    api.add_evaltask("et", spec(models=("m1", "m2", "m3"), tasks=("t1",), parallelism=1))
    run(api)
    assert len(api.jobs) == 1
    api.succeed(job_for(api, "m1", "t1"), {"a": 1.0})
    run(api)
    active = [j for j in api.jobs.values() if not j["status"]]
    assert len(active) == 1
    assert active[0]["metadata"]["labels"][constants.LABEL_MODEL] == "m2"


def test_suspend_and_resume(api):
    s = spec(models=("m1", "m2"), tasks=("t1", "t2"))
    api.add_evaltask("et", s)
    run(api)
    api.start(job_for(api, "m1", "t1"))
    api.succeed(job_for(api, "m2", "t1"), {"a": 1.0})
    api.edit_spec("et", {**s, "suspend": True})
    run(api)
    m1 = api.jobs[("ns", job_for(api, "m1", "t1"))]
    assert m1["spec"]["suspend"] is True
    assert m1["metadata"]["annotations"][constants.ANNOTATION_SUSPENDED_BY_OPERATOR] == "true"
    assert len(api.jobs) == 2, "no new Job while suspended"
    assert api.status("et")["phase"] == "Suspended"
    api.edit_spec("et", {**s, "suspend": False})
    run(api)
    m1 = api.jobs[("ns", job_for(api, "m1", "t1"))]
    assert m1["spec"]["suspend"] is False
    assert constants.ANNOTATION_SUSPENDED_BY_OPERATOR not in m1["metadata"]["annotations"]
    assert len(api.jobs) == 3, "m2's chain moves on once resumed"


def test_a_job_suspended_by_someone_else_waits_and_is_never_unsuspended(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    name = job_for(api, "m1", "t1")
    api.jobs[("ns", name)]["spec"]["suspend"] = True  # as Kueue's webhook does
    run(api)
    assert api.jobs[("ns", name)]["spec"]["suspend"] is True
    assert "patch_job" not in api.calls
    [entry] = api.status("et")["runs"]
    assert entry["state"] == "Pending"
    assert "waiting for admission" in record(api, "m1", "t1")["message"]


@pytest.mark.parametrize(
    ("mode", "expected_creates"),
    [
        pytest.param("failed", 4, id="rerun=failed reruns only the failed run"),
        pytest.param("all", 6, id="rerun=all reruns every run"),
    ],
)
def test_rerun_annotation(api, mode, expected_creates):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2", "t3")))
    for outcome in ("ok", "fail", "ok"):
        run(api)
        [name] = [n for (_, n), j in api.jobs.items() if not j["status"]]
        api.succeed(name, {"a": 1.0}) if outcome == "ok" else api.fail(name)
    run(api)
    assert api.status("et")["phase"] == "Failed"
    api.evaltasks[("ns", "et")]["metadata"]["annotations"][constants.ANNOTATION_RERUN] = mode
    run(api)
    assert constants.ANNOTATION_RERUN not in api.evaltasks[("ns", "et")]["metadata"]["annotations"]
    for _ in range(4):
        run(api)
        for name in [n for (_, n), j in api.jobs.items() if not j["status"]]:
            api.succeed(name, {"a": 1.0})
    run(api)
    assert api.calls.count("create_job") == expected_creates
    assert api.status("et")["phase"] == "Succeeded"


def test_a_deleted_evaltask_is_left_alone(api):
    assert run(api, "gone") is None
    assert api.calls == ["get_evaltask"]


def test_reuse_takes_a_matching_succeeded_run_of_another_evaltask(api):
    api.add_evaltask("first", spec(models=("m1",), tasks=("t1", "t2")))
    run(api, "first")
    api.succeed(job_for(api, "m1", "t1"), {"acc": 0.75})
    run(api, "first")
    api.fail(job_for(api, "m1", "t2"))
    run(api, "first")
    creates = api.calls.count("create_job")
    api.add_evaltask("second", spec(models=("m1",), tasks=("t1", "t2"), reuse=True))
    run(api, "second")  # starts the chain at t2; the reused t1's EvalRun comes next
    run(api, "second")
    runs = api.status("second")["runs"]
    assert runs[0]["state"] == "Reused"
    reused = [
        r
        for r in api.evalruns.values()
        if r["metadata"]["labels"][constants.LABEL_EVALTASK] == "second"
    ]
    first_t1 = next(
        r
        for r in api.evalruns.values()
        if r["metadata"]["labels"][constants.LABEL_EVALTASK] == "first"
        and r["spec"]["task"] == "t1"
    )
    taken = next(r for r in reused if r["spec"]["task"] == "t1")["status"]
    assert taken["metrics"] == [{"name": "acc", "value": 0.75}]
    assert taken["reusedFrom"] == f"ns/{first_t1['metadata']['name']}"
    assert runs[1]["state"] == "Pending", "a failed run is not reused"
    assert "list_evaltasks" not in api.calls, "found by fingerprint label, not by reading EvalTasks"
    assert api.calls.count("create_job") == creates + 1
    [new_job] = [
        j
        for j in api.jobs.values()
        if j["metadata"]["labels"][constants.LABEL_EVALTASK] == "second"
    ]
    assert new_job["metadata"]["labels"][constants.LABEL_TASK] == "t2"


def test_without_reuse_nothing_is_taken_from_other_evaltasks(api):
    api.add_evaltask("first", spec(models=("m1",), tasks=("t1",)))
    run(api, "first")
    api.succeed(job_for(api, "m1", "t1"), {"acc": 0.75})
    run(api, "first")
    api.add_evaltask("second", spec(models=("m1",), tasks=("t1",)))
    run(api, "second")
    assert api.status("second")["runs"][0]["state"] == "Pending"
    assert "list_evaltasks" not in api.calls


def test_a_pass_that_starts_chains_makes_only_their_evalruns_the_next_the_others(api):
    api.add_evaltask("et", spec(models=("m1", "m2"), tasks=("t1", "t2", "t3")))
    run(api)
    writes = [c for c in api.calls if c in ("create_evalrun", "create_job")]
    # Two chains start: their two EvalRuns, then their two Jobs, and nothing else.
    assert writes == ["create_evalrun"] * 2 + ["create_job"] * 2
    before = len(api.calls)
    run(api)  # the pass the new Jobs' events bring
    assert api.calls[before:].count("create_evalrun") == 4
    assert len(api.evalruns) == 6


def test_chains_furthest_behind_get_the_jobs_a_pass_creates_first(api):
    models = tuple(f"m{i:02d}" for i in range(25))  # more than the 20 Jobs a pass creates
    api.add_evaltask("et", spec(models=models, tasks=("t1", "t2")))
    run(api)
    started = {j["metadata"]["labels"][constants.LABEL_MODEL] for j in api.jobs.values()}
    assert len(started) == 20
    for _, name in list(api.jobs):
        api.succeed(name, {"accuracy": 0.5})
    run(api)
    started = {j["metadata"]["labels"][constants.LABEL_MODEL] for j in api.jobs.values()}
    assert started == set(models), "the five chains left out of the first pass start now"
