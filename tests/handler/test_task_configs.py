"""Handler tier: tasks that name a saved task configuration (configRef).

A run's task is resolved when its EvalRun is created and kept in it: an edit to the
config changes the runs still to be created, never a created one. A config that does not
exist (yet) is a wait on its runs and on the EvalTask, which ends by itself once the
config is applied: its event brings the EvalTask's pass.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from eval_operator import constants, handlers, reconcile
from tests.handler.fake_api import FakeApi
from tests.handler.test_reconcile import CONFIG, NOW, spec

CLUSTER = constants.CLUSTER_TASK_CONFIG.kind
BFCL = {
    "image": "evals/bfcl",
    "version": "v4",
    "command": ["python", "-m", "bfcl", "--release", "1"],
    "args": ["--category", "simple"],
    "env": [{"name": "BFCL_MODE", "value": "fc"}, {"name": "LOG", "value": "info"}],
    "primaryMetric": "accuracy",
    "weight": 2,
}


@pytest.fixture
def api():
    fake = FakeApi()
    fake.add_secret("key", {"token": "Bearer sk-very-secret"})
    return fake


def with_ref(models=("m1", "m2"), kind=CLUSTER, config="bfcl", **entry):
    """A spec whose task t1 is inline and whose task `bfcl` names `config`."""
    body = spec(models=models, tasks=("t1",))
    body["tasks"].append({"name": "bfcl", "configRef": {"kind": kind, "name": config}, **entry})
    return body


def passes(api, n=3, name="et", seconds=0):
    outcome = None
    for _ in range(n):
        outcome = reconcile.reconcile(api, "ns", name, NOW + timedelta(seconds=seconds), CONFIG)
    return outcome


def evalruns_of(api, task, evaltask="et"):
    return {
        r["spec"]["model"]: r
        for (_, n), r in api.evalruns.items()
        if r["spec"]["task"] == task and n.startswith(f"{evaltask}-")
    }


def container(job):
    """The task's container (an init container: the collector runs after it)."""
    pod = job["spec"]["template"]["spec"]
    every = pod.get("initContainers", []) + pod["containers"]
    return next(c for c in every if c["name"] == constants.TASK_CONTAINER)


def condition(api, type_, name="et"):
    conds = api.status(name).get("conditions", [])
    return next(c for c in conds if c["type"] == type_)


def finish_chains(api, evaltask="et", scores=None):
    """Every Job of `evaltask` succeeds (accuracy: `scores` by task, else 0.5), pass by
    pass, until its chains are done."""
    scores = scores or {}
    for _ in range(6):
        passes(api, 1, evaltask)
        for (_, name), job in list(api.jobs.items()):
            if name.startswith(f"{evaltask}-") and not job.get("status", {}).get("succeeded"):
                task = job["metadata"]["labels"][constants.LABEL_TASK]
                api.succeed(name, {"accuracy": scores.get(task, 0.5)})


def test_a_run_is_resolved_at_creation_and_keeps_its_task_when_the_config_changes(api):
    first = api.put_task_config("bfcl", BFCL, kind=CLUSTER)
    api.add_evaltask("et", with_ref(args=["--category", "multiple"], weight=3))
    finish_chains(api, scores={"t1": 0.0, "bfcl": 1.0})
    runs = evalruns_of(api, "bfcl")
    assert set(runs) == {"m1", "m2"}
    for run in runs.values():
        assert run["spec"]["configRef"] == {
            "kind": CLUSTER,
            "name": "bfcl",
            "resourceVersion": first["metadata"]["resourceVersion"],
        }
        task = run["spec"]["taskConfig"]
        assert task["command"] == BFCL["command"] and task["image"] == "evals/bfcl"
        assert task["args"] == ["--category", "multiple"], "the entry's args win"
    job = api.jobs[("ns", runs["m1"]["metadata"]["name"])]
    assert container(job)["image"] == "evals/bfcl:v4"
    assert container(job)["command"] == BFCL["command"]
    assert api.status("et")["phase"] == "Succeeded"
    names = {m: r["metadata"]["name"] for m, r in runs.items()}

    api.put_task_config("bfcl", {**BFCL, "command": ["python", "-m", "bfcl", "--release", "2"]})
    api.put_task_config("bfcl", {**BFCL, "command": ["bfcl-v2"]}, kind=CLUSTER)
    before = list(api.calls)
    passes(api, 2)
    after = evalruns_of(api, "bfcl")
    assert {m: r["metadata"]["name"] for m, r in after.items()} == names
    assert all(r["spec"]["taskConfig"]["command"] == BFCL["command"] for r in after.values())
    writes = [c for c in api.calls[len(before) :] if c.startswith(("create", "delete"))]
    assert writes == [], "a created run is never changed by its config's edit"
    assert api.status("et")["phase"] == "Succeeded"
    # The leaderboard weighs the task by the entry's weight, 3 (the config's is 2), t1 by 1.
    board = api.status("et")["leaderboard"]
    assert [(e["score"], e["tasks"]) for e in board] == [(pytest.approx(0.75), 2)] * 2

    # An EvalTask applied after the edit resolves the config as it is now.
    api.add_evaltask("later", with_ref(models=("m1",)), uid="uid-later")
    passes(api, 3, "later")
    [run] = evalruns_of(api, "bfcl", "later").values()
    assert run["spec"]["taskConfig"]["command"] == ["bfcl-v2"]
    assert run["spec"]["configRef"]["resourceVersion"] != first["metadata"]["resourceVersion"]


def test_a_run_created_after_the_edit_gets_it_and_one_created_before_does_not(api):
    """A chain's first run is created first (plan._cap_run_creates): the config is edited
    between the first pass, which creates t1's EvalRuns, and the next, which creates the
    configRef task's."""
    body = with_ref(models=("m1",))
    body["tasks"] = [body["tasks"][1], body["tasks"][0]]  # bfcl first, then t1
    body["tasks"].append({"name": "t3", "configRef": {"kind": CLUSTER, "name": "bfcl"}})
    api.put_task_config("bfcl", BFCL, kind=CLUSTER)
    api.add_evaltask("et", body)
    passes(api, 1)
    assert set(evalruns_of(api, "bfcl")) == {"m1"} and evalruns_of(api, "t3") == {}
    api.put_task_config("bfcl", {**BFCL, "command": ["bfcl-v2"]}, kind=CLUSTER)
    passes(api, 2)
    assert evalruns_of(api, "bfcl")["m1"]["spec"]["taskConfig"]["command"] == BFCL["command"]
    assert evalruns_of(api, "t3")["m1"]["spec"]["taskConfig"]["command"] == ["bfcl-v2"]


def test_editing_the_entry_resolves_the_run_again_from_the_config_as_it_is_now(api):
    api.put_task_config("bfcl", BFCL, kind=CLUSTER)
    api.add_evaltask("et", with_ref(models=("m1",)))
    passes(api, 2)
    old = evalruns_of(api, "bfcl")["m1"]["metadata"]["name"]
    api.put_task_config("bfcl", {**BFCL, "command": ["bfcl-v2"]}, kind=CLUSTER)
    api.edit_spec("et", with_ref(models=("m1",), args=["--category", "parallel"]))
    passes(api, 3)
    run = evalruns_of(api, "bfcl")["m1"]
    assert run["metadata"]["name"] != old, "the entry changed: its run is a new one"
    assert run["spec"]["taskConfig"]["command"] == ["bfcl-v2"]
    assert run["spec"]["taskConfig"]["args"] == ["--category", "parallel"]


def test_a_missing_config_waits_with_a_reason_then_its_runs_start_once_it_exists(api):
    api.add_evaltask("et", with_ref(models=("m1",), kind=constants.TASK_CONFIG.kind, config="sets"))
    outcome = passes(api, 2)
    assert outcome is not None and not outcome.invalid
    assert evalruns_of(api, "bfcl") == {}, "nothing is created for a task not resolved"
    status = api.status("et")
    assert status["phase"] != "Failed"
    ready = condition(api, "ReadyToStart")
    assert (ready["status"], ready["reason"]) == ("False", "TaskConfigNotFound")
    assert ready["message"].startswith("spec.tasks[1].configRef: EvalTaskConfig 'sets' not found")
    valid = condition(api, "SpecValid")
    assert (valid["status"], valid["reason"]) == ("Unknown", "TaskConfigNotFound")
    [entry] = [r for r in status["runs"] if r["task"] == "bfcl"]
    assert entry["state"] == "Pending"
    assert outcome.requeue_after is not None, "looked at again with a backoff"
    # t1 is inline: its run goes on meanwhile.
    assert set(evalruns_of(api, "t1")) == {"m1"}

    api.succeed(next(n for (_, n) in api.jobs), {"accuracy": 1.0})
    passes(api, 2)
    assert evalruns_of(api, "bfcl") == {}, "still waiting: the chain's next run has no config"
    assert api.status("et")["phase"] != "Failed"

    api.put_task_config("sets", BFCL)
    passes(api, 2)
    run = evalruns_of(api, "bfcl")["m1"]
    assert run["spec"]["configRef"]["kind"] == constants.TASK_CONFIG.kind
    assert container(api.jobs[("ns", run["metadata"]["name"])])["command"] == BFCL["command"]
    assert condition(api, "ReadyToStart")["status"] == "True"
    assert condition(api, "SpecValid")["status"] == "True"


def test_an_override_that_conflicts_with_the_config_is_an_invalid_spec_naming_the_entry(api):
    # The config's image names its tag, so it sets no version; the entry sets one.
    tagged = {k: v for k, v in BFCL.items() if k != "version"} | {"image": "evals/bfcl:v4"}
    api.put_task_config("bfcl", tagged)
    api.add_evaltask("et", with_ref(models=("m1",), kind=constants.TASK_CONFIG.kind, version="v5"))
    outcome = passes(api, 1)
    assert outcome is not None and outcome.invalid
    valid = condition(api, "SpecValid")
    assert valid["status"] == "False"
    assert valid["message"].startswith("spec.tasks[1].configRef: with EvalTaskConfig 'bfcl'")
    assert "names its tag" in valid["message"]
    assert api.jobs == {}


def test_a_config_event_brings_the_passes_of_the_evaltasks_that_name_it(api):
    """The index maps each config to the EvalTasks whose tasks name it; an event of that
    config (not kopf's initial listing) runs their passes, and no one else's."""
    api.add_evaltask("et", with_ref(models=("m1",), kind=constants.TASK_CONFIG.kind, config="sets"))
    api.add_evaltask("other", spec(models=("m1",), tasks=("t1",)), uid="uid-other")
    index: dict = {}
    for (ns, name), body in api.evaltasks.items():
        for key, value in (handlers.evaltasks_by_config(ns, name, body["spec"]) or {}).items():
            index.setdefault(key, []).append(value)
    assert index == {(constants.TASK_CONFIG.kind, "ns", "sets"): [("ns", "et")]}
    passes(api, 2)  # t1's run is made; bfcl's waits for its config
    assert evalruns_of(api, "bfcl") == {}
    clock = lambda: datetime(2026, 1, 1, 1, 0, tzinfo=UTC)  # noqa: E731
    handlers.RECONCILER = handlers.Reconciler(lambda: api, CONFIG, clock)
    try:

        def event(handler, type_, **where):
            before = api.calls.count("get_evaltask")
            asyncio.run(handler(type=type_, evaltasks_by_config=index, **where))
            return api.calls.count("get_evaltask") - before

        assert event(handlers.task_config_event, None, namespace="ns", name="sets") == 0
        api.put_task_config("sets", BFCL)
        assert event(handlers.task_config_event, "ADDED", namespace="ns", name="sets") == 1
        assert set(evalruns_of(api, "bfcl")) == {"m1"}, "the pass it brought resolved it"
        assert event(handlers.task_config_event, "MODIFIED", namespace="ns2", name="sets") == 0
        assert event(handlers.cluster_task_config_event, "MODIFIED", name="sets") == 0
    finally:
        handlers.RECONCILER = None


def test_the_index_reads_refs_from_specs_as_written_even_invalid_ones():
    keys = handlers.config_keys
    assert keys("ns", {"tasks": [{"name": "a", "configRef": {"name": "x"}}]}) == [
        (constants.TASK_CONFIG.kind, "ns", "x")
    ]
    assert keys("ns", {"tasks": [{"configRef": {"name": "x", "kind": CLUSTER}}]}) == [
        (CLUSTER, "", "x")
    ]
    for broken in (None, {}, {"tasks": "x"}, {"tasks": [1, {"configRef": "x"}]}):
        assert keys("ns", broken) == []


def test_a_config_fix_is_dry_run_again_and_unblocks_jobs_the_server_rejected(api):
    """The dry-run's verdict is kept per generation, but a config edit is no new generation:
    the verdict holds only for the config versions it was made with."""
    api.put_task_config("bfcl", {**BFCL, "args": ["--broken"]}, kind=CLUSTER)
    api.reject = lambda job: (
        [{"field": "spec.template.spec.initContainers[1].args[0]", "message": "no such flag"}]
        if "--broken" in container(job).get("args", [])
        else []
    )
    api.add_evaltask("et", with_ref())
    passes(api, 2)
    assert (condition(api, "SpecValid")["status"], condition(api, "SpecValid")["reason"]) == (
        "False",
        "JobRejected",
    )
    assert api.jobs == {}
    dry_runs = api.calls.count("dry_run_job")
    passes(api, 2)
    assert api.calls.count("dry_run_job") == dry_runs, "unchanged: the verdict is kept"

    api.put_task_config("bfcl", BFCL, kind=CLUSTER)
    passes(api, 2)
    assert condition(api, "SpecValid")["status"] == "True"
    assert api.jobs, "the fixed config's Jobs are created"
    dry_runs = api.calls.count("dry_run_job")
    passes(api, 2)
    assert api.calls.count("dry_run_job") == dry_runs, "one dry-run per config version"
