"""Desired runs vs observed EvalRuns and Jobs -> records and actions, as a table."""

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


def _name(s, model, task, fp=None):
    m = next(x for x in s.models if x.name == model)
    t = next(x for x in s.tasks if x.name == task)
    fp = fp or naming.fingerprint(s, m, t)
    return naming.job_name("et", model, task, fp), fp


def evalrun(s, model, task, state=None, fp=None, job=""):
    name, fp = _name(s, model, task, fp)
    status = {"state": state, "job": job or (name if state else "")} if state else {}
    return {
        "metadata": {
            "name": name,
            "uid": f"run-{name}",
            "labels": naming.run_labels("et", "uid", model, task, fp),
        },
        "spec": {"model": model, "task": task, "fingerprint": fp},
        "status": status,
    }


def job(s, model, task, state=None, suspend=False, ours=False, terminating=False, fp=None):
    name, fp = _name(s, model, task, fp)
    meta = {
        "name": name,
        "uid": f"job-{name}",
        "labels": naming.run_labels("et", "uid", model, task, fp),
        "annotations": {constants.ANNOTATION_SUSPENDED_BY_OPERATOR: "true"} if ours else {},
        "ownerReferences": [{"kind": "EvalRun", "uid": f"run-{name}", "controller": True}],
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    if terminating:
        meta["deletionTimestamp"] = "T"
    status = {}
    if state == "done":
        status = {"conditions": [{"type": "Failed", "status": "True", "reason": "X"}]}
    elif state == "running":
        status = {"active": 1}
    return {"metadata": meta, "spec": {"suspend": suspend}, "status": status}


def started(s, model, task, record_state="Running", **job_args):
    """An EvalRun whose Job is as given."""
    return [evalrun(s, model, task, record_state)], [job(s, model, task, **job_args)]


def observe(runs=(), jobs=(), annotations=None, suspend=False):
    body = {
        "metadata": {
            "name": "et",
            "namespace": "ns",
            "uid": "uid",
            "generation": 1,
            "annotations": annotations or {},
        },
        "spec": {"suspend": suspend},
        "status": {},
    }
    return plan.Observed(body, list(runs), list(jobs), [], NOW)


def jobs_created(p):
    return [(r.model.name, r.task.name) for r in p.create_jobs]


S = make_spec()
S3 = make_spec(models=("m1", "m2", "m3"), tasks=("t1",))


def _mix(*pairs):
    runs, jobs = [], []
    for r, j in pairs:
        runs += r
        jobs += j
    return runs, jobs


CASES = [
    pytest.param(
        S,
        ([], []),
        [("m1", "t1"), ("m2", "t1")],
        0,
        id="a fresh task starts the first task of every model",
    ),
    pytest.param(
        S,
        started(S, "m1", "t1", state="running"),
        [("m2", "t1")],
        0,
        id="a busy chain waits while an idle one starts",
    ),
    pytest.param(
        S,
        _mix(
            ([evalrun(S, "m1", "t1", "Failed")], [job(S, "m1", "t1", "done")]),
            started(S, "m2", "t1", state="running"),
        ),
        [("m1", "t2")],
        0,
        id="a finished run lets its chain move to the next task",
    ),
    pytest.param(
        S,
        ([evalrun(S, m, t, "Succeeded") for m in ("m1", "m2") for t in ("t1", "t2")], []),
        [],
        0,
        id="nothing is created when every run is recorded",
    ),
    pytest.param(
        make_spec(parallelism=1), ([], []), [("m1", "t1")], 0, id="parallelism 1 starts one chain"
    ),
    pytest.param(
        make_spec(parallelism=1),
        ([evalrun(S, "m1", "t1", "Failed")], []),
        [("m1", "t2")],
        0,
        id="parallelism 1 moves on within the same chain",
    ),
    pytest.param(
        S3.model_copy(update={"parallelism": 2}),
        started(S3, "m1", "t1", state="running"),
        [("m2", "t1")],
        0,
        id="parallelism 2 fills the second slot only",
    ),
    pytest.param(
        S,
        ([], [job(S, "m1", "t1", "running", fp="0000000000000000")]),
        [],
        1,
        id="a stale Job is deleted and nothing is created in the same pass",
    ),
    pytest.param(
        S,
        ([evalrun(S, "m1", "t1", "Running")], [job(S, "m1", "t1", terminating=True)]),
        [("m2", "t1")],
        0,
        id="a terminating Job keeps its own chain busy",
    ),
    pytest.param(make_spec(suspend=True), ([], []), [], 0, id="a suspended task starts nothing"),
    pytest.param(
        S,
        ([], [job(S, "m1", "t1", "done")]),
        [],
        1,
        id="a Job without its EvalRun is deleted before anything starts",
    ),
]


@pytest.mark.parametrize(
    ("s", "observed", "creates", "deletes"),
    CASES,
)
def test_plan(s, observed, creates, deletes):
    runs, jobs = observed
    p = plan.plan(s, observe(runs, jobs, suspend=s.suspend))
    assert jobs_created(p) == creates
    assert len(p.delete_jobs) + len(p.delete_runs) == deletes


def test_a_fresh_task_creates_the_first_jobs_and_only_their_evalruns():
    p = plan.plan(S, observe())
    assert p.create_runs == p.create_jobs and len(p.create_jobs) == 2
    # Once every chain has started, the other EvalRuns are made.
    runs, jobs = _mix(started(S, "m1", "t1"), started(S, "m2", "t1"))
    later = plan.plan(S, observe(runs, jobs))
    assert not later.create_jobs
    assert sorted((r.model.name, r.task.name) for r in later.create_runs) == [
        ("m1", "t2"),
        ("m2", "t2"),
    ]


def test_creates_are_capped_per_pass():
    big = make_spec(
        models=tuple(f"m{i}" for i in range(30)), tasks=tuple(f"t{i}" for i in range(5))
    )
    p = plan.plan(big, observe())
    assert len(p.create_jobs) == plan.MAX_JOB_CREATES_PER_PASS
    assert p.create_runs == p.create_jobs
    runs, jobs = _mix(*(started(big, f"m{i}", "t0") for i in range(30)))
    later = plan.plan(big, observe(runs, jobs))
    assert len(later.create_runs) == plan.MAX_RUN_CREATES_PER_PASS


def test_a_reused_result_is_recorded_only_with_the_evalrun_it_is_written_to():
    big = make_spec(models=("m1",), tasks=tuple(f"t{i}" for i in range(120)))
    fresh = plan.desired_runs(big, "et")
    # Another EvalTask has every run's result but t0's: t0 starts the chain.
    reusable = {
        r.key: {"metadata": {"name": "o", "namespace": "ns"}, "status": {}} for r in fresh[1:]
    }
    first = plan.plan(big, observe(), reusable)
    assert [r.task.name for r in first.create_runs] == ["t0"]
    assert set(first.record) <= {r.name for r in first.create_runs}
    runs, jobs = started(big, "m1", "t0")
    later = plan.plan(big, observe(runs, jobs), reusable)
    assert len(later.create_runs) == plan.MAX_RUN_CREATES_PER_PASS
    made = {r.name for r in later.create_runs}
    assert made <= set(later.record), "each reused result goes with its EvalRun"
    assert set(later.record) - made == {runs[0]["metadata"]["name"]}, "no write to a missing run"


def test_suspend_targets_running_jobs_and_resume_only_ours():
    runs, jobs = started(S, "m1", "t1", state="running")
    p = plan.plan(make_spec(suspend=True), observe(runs, jobs, suspend=True))
    assert p.suspend == [jobs[0]["metadata"]["name"]]
    r1, ours = started(S, "m1", "t1", state="running", suspend=True, ours=True)
    r2, theirs = started(S, "m2", "t1", state="running", suspend=True)
    p = plan.plan(S, observe(r1 + r2, ours + theirs))
    assert p.unsuspend == [ours[0]["metadata"]["name"]]
    assert jobs_created(p) == []


def test_a_final_record_is_kept_whatever_its_job_says():
    runs = [evalrun(S, "m1", "t1", "Succeeded")]
    runs[0]["status"].update(metrics=[{"name": "a", "value": 1.0}], score=1.0)
    jobs = [job(S, "m1", "t1", "done")]  # the Job says Failed: the record wins
    p = plan.plan(S, observe(runs, jobs))
    assert p.views[0].record.state == "Succeeded"
    assert p.views[0].record.metrics == (("a", 1.0),)
    assert runs[0]["metadata"]["name"] not in p.record, "a final record is not rewritten"


def test_records_with_another_fingerprint_are_deleted():
    stale = evalrun(S, "m1", "t1", "Succeeded", fp="feedfeedfeedfeed")
    p = plan.plan(S, observe([stale]))
    assert p.delete_runs == [stale["metadata"]["name"]]
    assert p.views[0].record.state == "Pending"
    assert p.create_jobs == [] and p.create_runs == []


def test_runs_are_model_major_in_task_order_with_their_names():
    p = plan.plan(S, observe())
    assert [(v.run.model.name, v.run.task.name) for v in p.views] == [
        ("m1", "t1"),
        ("m1", "t2"),
        ("m2", "t1"),
        ("m2", "t2"),
    ]
    assert all(v.run.name.startswith(f"et-{v.run.model.name}-{v.run.task.name}-") for v in p.views)


@pytest.mark.parametrize("mode", ["failed", "all"])
def test_rerun_deletes_before_creating(mode):
    runs = [evalrun(S, "m1", "t1", "Failed")]
    jobs = [job(S, "m1", "t1", "done")]
    p = plan.plan(S, observe(runs, jobs, annotations={constants.ANNOTATION_RERUN: mode}))
    assert p.delete_runs == [runs[0]["metadata"]["name"]]
    assert p.delete_jobs == [jobs[0]["metadata"]["name"]]
    assert p.create_jobs == [] and p.create_runs == []
    assert p.rerun == mode
    assert p.views[0].record.state == "Pending"


def test_an_unknown_rerun_value_reruns_nothing_but_is_handed_back():
    runs = [evalrun(S, "m1", "t1", "Failed")]
    p = plan.plan(S, observe(runs, annotations={constants.ANNOTATION_RERUN: "maybe"}))
    assert p.rerun == "maybe"
    assert p.delete_runs == []


def test_a_blocked_spec_creates_no_job_and_says_why():
    p = plan.plan(S, observe(), blocked="waiting: Secret 'key' not found")
    assert p.create_jobs == []
    assert p.views[0].record.message == "waiting: Secret 'key' not found"


def test_unfinished_counts_runs_without_a_final_record():
    runs = [evalrun(S, "m1", "t1", "Succeeded"), evalrun(S, "m1", "t2", "Running")]
    desired = plan.desired_runs(S, "et")
    assert plan.unfinished(desired, observe(runs)) == 3
    done = [evalrun(S, m, t, "Failed") for m in ("m1", "m2") for t in ("t1", "t2")]
    assert plan.unfinished(desired, observe(done)) == 0
