"""Handler tier: a Job goes (ttlSecondsAfterFinished) once its run's result is recorded.

The pod holds the only copy of a result until its EvalRun records it, so the TTL is set
only after that record is written: then the TTL controller deletes the Job and its pods,
and nothing the operator shows changes. Set once: a Job that has one is left alone.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter

import pytest

from eval_operator import cache, handlers, reconcile
from tests.handler.fake_api import FakeApi, FakeWatch
from tests.handler.test_reconcile import NOW, job_for, metrics_of, record, spec

DAY = 86400


@pytest.fixture
def api():
    fake = FakeApi()
    fake.add_secret("key", {"token": "Bearer sk-very-secret"})
    return fake


def run(api, config=None):
    config = config or reconcile.Config(runner_image="runner:test", job_ttl=DAY)
    return reconcile.reconcile(api, "ns", "et", NOW, config)


def ttl(api, name):
    return api.jobs[("ns", name)]["spec"].get("ttlSecondsAfterFinished")


def test_the_operators_default_keeps_a_finished_job_for_a_day():
    assert reconcile.Config().job_ttl == DAY


def test_a_jobs_ttl_is_set_once_its_result_is_recorded_and_never_before(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    name = job_for(api, "m1", "t1")
    assert ttl(api, name) is None
    api.start(name)
    run(api)
    assert ttl(api, name) is None, "running: its pod will hold the result"
    api.succeed(name, {"accuracy": 0.5})
    before = len(api.calls)
    run(api)
    assert record(api, "m1", "t1")["state"] == "Succeeded"
    assert ttl(api, name) == DAY, "set in the pass that records the result"
    calls = api.calls[before:]
    assert calls.index("patch_evalrun_status") < calls.index("patch_job"), "record first"
    run(api)
    run(api)
    assert api.calls.count("patch_job") == 1, "set once"


def test_a_failed_runs_job_gets_its_ttl_too(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    run(api)
    first = job_for(api, "m1", "t1")
    api.fail(first)
    run(api)
    assert record(api, "m1", "t1")["state"] == "Failed"
    assert ttl(api, first) == DAY
    assert ttl(api, job_for(api, "m1", "t2")) is None, "the next one has not finished"


def test_no_ttl_while_the_record_of_the_result_is_refused(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    name = job_for(api, "m1", "t1")
    api.succeed(name, {"accuracy": 0.5})
    rbac = 'evalruns.evaloperator.io "x" is forbidden: cannot patch resource "evalruns/status"'
    fault = api.inject("patch_status", "EvalRun", 403, rbac, name=name)
    run(api)
    run(api)
    assert record(api, "m1", "t1").get("state", "Pending") == "Pending"
    assert ttl(api, name) is None, "the pod holds the only copy of the result"
    fault.times = 0
    run(api)
    assert record(api, "m1", "t1")["state"] == "Succeeded"
    assert ttl(api, name) == DAY


def test_a_job_left_without_its_ttl_gets_it_at_a_later_pass(api):
    """An operator that stopped between the record and the TTL (or was upgraded from one
    that set none) sets it on the Jobs of recorded runs."""
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    name = job_for(api, "m1", "t1")
    api.succeed(name, {"accuracy": 0.5})
    api.inject("patch", "Job", 503, "etcdserver: leader changed", times=1)
    with pytest.raises(Exception, match="leader changed"):
        run(api)
    assert record(api, "m1", "t1")["state"] == "Succeeded" and ttl(api, name) is None
    run(api)
    assert ttl(api, name) == DAY


def test_a_job_deleted_by_its_ttl_changes_nothing(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    run(api)
    for task in ("t1", "t2"):
        api.succeed(job_for(api, "m1", task), {"accuracy": 0.5})
        run(api)
    before = copy.deepcopy(api.status("et"))
    assert before["phase"] == "Succeeded"
    # The TTL controller deletes the Jobs, the garbage collector their pods.
    api.jobs.clear()
    api.collect_garbage()
    assert api.pods == {}
    outcome = run(api)
    assert api.status("et") == before and not outcome.status_written
    assert metrics_of(api, "m1", "t1") == [("accuracy", 0.5)]
    assert api.calls.count("create_job") == 2
    assert api.calls.count("patch_job") == 2


def test_a_ttl_of_zero_keeps_jobs_until_their_evaltask_goes(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    keep = reconcile.Config(runner_image="runner:test", job_ttl=0)
    run(api, keep)
    name = job_for(api, "m1", "t1")
    api.succeed(name, {"accuracy": 0.5})
    run(api, keep)
    run(api, keep)
    assert record(api, "m1", "t1")["state"] == "Succeeded"
    assert ttl(api, name) is None and "patch_job" not in api.calls


def test_a_job_that_is_not_the_runs_gets_no_ttl(api):
    """A finished run's name may be held by a Job someone else made: never ours to expire."""
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api)
    name = job_for(api, "m1", "t1")
    api.succeed(name, {"accuracy": 0.5})
    run(api)
    theirs = copy.deepcopy(api.jobs[("ns", name)])
    theirs["metadata"]["ownerReferences"] = []
    theirs["metadata"]["uid"] = "their-job"
    theirs["spec"].pop("ttlSecondsAfterFinished", None)
    api.jobs[("ns", name)] = theirs
    run(api)
    assert ttl(api, name) is None


def test_the_watches_keep_a_jobs_ttl_so_a_pass_from_them_sets_it_once(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    config = reconcile.Config(runner_image="runner:test", job_ttl=DAY)
    reconciler = handlers.Reconciler(lambda: api, config, lambda: NOW)
    watch = FakeWatch(api)
    reconciler.watch(watch)

    def event_pass() -> Counter[str]:
        before = len(api.calls)
        asyncio.run(reconciler.trigger("ns", "et"))
        return Counter(api.calls[before:])

    event_pass()
    watch.sync()
    name = job_for(api, "m1", "t1")
    api.succeed(name, {"accuracy": 0.5})
    watch.sync()
    assert event_pass()["patch_job"] == 1
    assert event_pass()["patch_job"] == 0, "the operator's own write shows it set"
    watch.sync()
    [job] = watch("ns", "et").jobs
    assert job["spec"]["ttlSecondsAfterFinished"] == DAY
    assert cache.slim_job(api.jobs[("ns", name)])["spec"]["ttlSecondsAfterFinished"] == DAY
    assert event_pass()["patch_job"] == 0, "the watch shows it set"
