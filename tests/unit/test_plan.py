"""Desired runs vs observed Jobs -> run states and actions, as a table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eval_operator import constants, naming, plan, spec

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def make_spec(models=("m1", "m2"), tasks=("t1", "t2"), **extra):
    return spec.parse_spec(
        {
            "models": [{"name": m, "url": "http://x/v1"} for m in models],
            "tasks": [{"name": t, "image": "i"} for t in tasks],
            **extra,
        }
    )


def job(s, model, task, state=None, suspend=False, ours=False, terminating=False, fp=None):
    m = next(x for x in s.models if x.name == model)
    t = next(x for x in s.tasks if x.name == task)
    fp = fp or naming.fingerprint(s, m, t)
    meta = {
        "name": naming.job_name("et", model, task, fp),
        "labels": naming.run_labels("et", "uid", model, task, fp),
        "annotations": {constants.ANNOTATION_SUSPENDED_BY_OPERATOR: "true"} if ours else {},
    }
    if terminating:
        meta["deletionTimestamp"] = "T"
    status = {}
    if state == "done":
        status = {"conditions": [{"type": "Failed", "status": "True", "reason": "X"}]}
    elif state == "running":
        status = {"active": 1}
    return {"metadata": meta, "spec": {"suspend": suspend}, "status": status}


def observe(jobs=(), annotations=None, runs=None):
    body = {
        "metadata": {
            "name": "et",
            "namespace": "ns",
            "uid": "uid",
            "generation": 1,
            "annotations": annotations or {},
        },
        "status": {"runs": runs or []},
    }
    return plan.Observed(body, list(jobs), [], NOW)


def created(p):
    return [(r.model.name, r.task.name) for r in p.create]


S = make_spec()
S3 = make_spec(models=("m1", "m2", "m3"), tasks=("t1",))

CASES = [
    (S, [], [("m1", "t1"), ("m2", "t1")], 0),
    (S, [job(S, "m1", "t1", "running")], [("m2", "t1")], 0),
    (S, [job(S, "m1", "t1", "done"), job(S, "m2", "t1", "running")], [("m1", "t2")], 0),
    (
        S,
        [
            job(S, "m1", "t1", "done"),
            job(S, "m1", "t2", "done"),
            job(S, "m2", "t1", "done"),
            job(S, "m2", "t2", "done"),
        ],
        [],
        0,
    ),
    (make_spec(parallelism=1), [], [("m1", "t1")], 0),
    (make_spec(parallelism=1), [job(S, "m1", "t1", "done")], [("m1", "t2")], 0),
    (S3.model_copy(update={"parallelism": 2}), [job(S3, "m1", "t1", "running")], [("m2", "t1")], 0),
    (S, [job(S, "m1", "t1", "running", fp="0000000000000000")], [], 1),
    (S, [job(S, "m1", "t1", "running", terminating=True)], [("m2", "t1")], 0),
    (make_spec(suspend=True), [], [], 0),
]


@pytest.mark.parametrize(
    ("s", "jobs", "creates", "deletes"),
    CASES,
    ids=[
        "a fresh task starts the first task of every model",
        "a busy chain waits while an idle one starts",
        "a finished run lets its chain move to the next task",
        "nothing is created when every run is done",
        "parallelism 1 starts one chain",
        "parallelism 1 moves on within the same chain",
        "parallelism 2 fills the second slot only",
        "a stale Job is deleted and nothing is created in the same pass",
        "a terminating Job keeps its chain busy",
        "a suspended task starts nothing",
    ],
)
def test_plan(s, jobs, creates, deletes):
    p = plan.plan(s, observe(jobs))
    assert created(p) == creates
    assert len(p.delete) == deletes


def test_creates_are_capped_per_pass():
    big = make_spec(models=tuple(f"m{i}" for i in range(30)), tasks=("t1",))
    assert len(plan.plan(big, observe()).create) == plan.MAX_CREATES_PER_PASS


def test_suspend_targets_running_jobs_and_resume_only_ours():
    running = job(S, "m1", "t1", "running")
    assert plan.plan(make_spec(suspend=True), observe([running])).suspend == [
        running["metadata"]["name"]
    ]
    ours = job(S, "m1", "t1", "running", suspend=True, ours=True)
    theirs = job(S, "m2", "t1", "running", suspend=True)
    p = plan.plan(S, observe([ours, theirs]))
    assert p.unsuspend == [ours["metadata"]["name"]]
    assert created(p) == []


def test_previous_results_fill_in_for_missing_jobs():
    m, t = S.models[0], S.tasks[0]
    fp = naming.fingerprint(S, m, t)
    old = {
        "model": "m1",
        "task": "t1",
        "fingerprint": fp,
        "state": "Succeeded",
        "metrics": {"a": 1.0},
        "attempts": 1,
    }
    p = plan.plan(S, observe(runs=[old]))
    assert p.runs[0]["state"] == "Succeeded" and p.runs[0]["metrics"] == {"a": 1.0}
    assert ("m1", "t2") in created(p) and ("m1", "t1") not in created(p)


def test_previous_results_with_another_fingerprint_are_dropped():
    old = {
        "model": "m1",
        "task": "t1",
        "fingerprint": "feedfeedfeedfeed",
        "state": "Succeeded",
        "metrics": {"a": 1.0},
    }
    p = plan.plan(S, observe(runs=[old]))
    assert p.runs[0]["state"] == "Pending" and p.runs[0]["metrics"] == {}


def test_runs_are_model_major_in_task_order_with_their_job_names():
    p = plan.plan(S, observe())
    assert [(r["model"], r["task"]) for r in p.runs] == [
        ("m1", "t1"),
        ("m1", "t2"),
        ("m2", "t1"),
        ("m2", "t2"),
    ]
    assert all(r["job"].startswith(f"et-{r['model']}-{r['task']}-") for r in p.runs)


@pytest.mark.parametrize("mode", ["failed", "all"])
def test_rerun_deletes_before_creating(mode):
    jobs = [job(S, "m1", "t1", "done")]
    p = plan.plan(S, observe(jobs, annotations={constants.ANNOTATION_RERUN: mode}))
    assert p.delete == [jobs[0]["metadata"]["name"]]
    assert p.create == []
    assert p.rerun_handled
    assert p.runs[0]["state"] == "Pending"


def test_an_unknown_rerun_value_is_ignored():
    p = plan.plan(S, observe(annotations={constants.ANNOTATION_RERUN: "maybe"}))
    assert not p.rerun_handled
