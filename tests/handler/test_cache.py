"""Passes fed by the watches (cache.py): they read nothing, and a watch that has not shown
the operator's own writes yet makes no pass repeat, undo or forget them."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from eval_operator import cache, constants, handlers
from tests.handler.fake_api import FakeApi, FakeWatch
from tests.handler.test_handlers import CLOCK
from tests.handler.test_reconcile import CONFIG, NOW, job_for, record, spec

READS = {"get_evaltask", "list_evalruns", "list_jobs", "list_pods", "list_evaltasks"}


@pytest.fixture
def api():
    fake = FakeApi()
    fake.add_secret("key", {"token": "Bearer sk-very-secret"})
    fake.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    return fake


def watched(api: FakeApi, clock=CLOCK) -> tuple[handlers.Reconciler, FakeWatch]:
    reconciler = handlers.Reconciler(lambda: api, CONFIG, clock)
    watch = FakeWatch(api)
    reconciler.watch(watch)
    return reconciler, watch


def event_pass(reconciler: handlers.Reconciler, api: FakeApi) -> Counter[str]:
    """One pass as an event asks for it; the API calls it made."""
    before = len(api.calls)
    asyncio.run(reconciler.trigger("ns", "et"))
    return Counter(api.calls[before:])


def test_a_pass_for_an_event_reads_nothing_from_the_api_server(api):
    reconciler, watch = watched(api)
    first = event_pass(reconciler, api)
    assert first["create_job"] == 1 and not READS & set(first)
    watch.sync()
    api.succeed(job_for(api, "m1", "t1"), {"accuracy": 0.5})
    watch.sync()
    calls = event_pass(reconciler, api)
    assert not READS & set(calls), calls
    assert record(api, "m1", "t1")["state"] == "Succeeded"
    assert calls["create_job"] == 1, "the chain's next Job"
    assert api.status("et")["progress"] == "1/2"


def test_a_watch_behind_the_operators_writes_repeats_and_undoes_nothing(api):
    reconciler, watch = watched(api)
    event_pass(reconciler, api)  # creates both EvalRuns, the first Job, the status
    # The pass that sees the Job (here among the kept writes) records it in its EvalRun.
    seen = event_pass(reconciler, api)
    assert seen["patch_evalrun_status"] == 1 and not seen["create_job"], seen
    assert record(api, "m1", "t1")["job"] == job_for(api, "m1", "t1")
    status = api.status("et")
    # The watch has shown none of it yet: without the writes laid over it, this pass
    # would create the EvalRuns and the Job again and write a status of no runs.
    calls = event_pass(reconciler, api)
    assert not {"create_evalrun", "create_job", "patch_status", "patch_evalrun_status"} & set(
        calls
    ), calls
    assert api.status("et") == status
    assert reconciler.writes.pending() > 0
    watch.sync()
    event_pass(reconciler, api)
    assert reconciler.writes.pending() == 0, "what the watch shows is no longer kept"


def test_a_recorded_result_is_announced_once_while_the_watch_lags(api):
    reconciler, watch = watched(api)
    event_pass(reconciler, api)
    api.succeed(job_for(api, "m1", "t1"), {"accuracy": 0.5})
    watch.sync()
    event_pass(reconciler, api)  # records the result, creates the next Job
    seen = event_pass(reconciler, api)  # records the next Job in its EvalRun
    assert seen["patch_evalrun_status"] == 1 and not seen["post_event"], seen
    # The watch still shows the EvalRun without its result and the next Job missing.
    calls = event_pass(reconciler, api)
    assert not {"patch_evalrun_status", "create_job", "post_event"} & set(calls), calls
    succeeded = [e for e in api.events if e["reason"] == "RunSucceeded"]
    assert len(succeeded) == 1
    assert sorted(api.jobs) == [("ns", job_for(api, "m1", "t1")), ("ns", job_for(api, "m1", "t2"))]


def test_a_timer_pass_reads_the_api_server_and_what_was_kept_still_shows_after_it(api):
    reconciler, _ = watched(api)
    event_pass(reconciler, api)  # creates the first Job; the watch shows nothing yet
    before = len(api.calls)
    asyncio.run(reconciler.trigger("ns", "et", fresh=True))
    assert {"get_evaltask", "list_evalruns", "list_jobs", "list_pods"} <= set(api.calls[before:])
    # The watch still has not shown the Job: a pass for an event must see it all the same,
    # not take it for deleted (failing its run) nor create it again.
    calls = event_pass(reconciler, api)
    assert not {"create_job", "create_evalrun", "patch_evalrun_status"} & set(calls), calls
    assert record(api, "m1", "t1")["state"] != "Failed"


def test_a_pass_without_the_evaltask_in_the_watch_reads_the_api_server(api):
    reconciler, _ = watched(api)
    api.add_evaltask("late", spec(models=("m1",), tasks=("t1",)))  # not synced
    asyncio.run(reconciler.trigger("ns", "late"))
    assert "get_evaltask" in api.calls
    assert len(api.jobs) == 1


def test_a_rerun_deletion_hides_the_old_record_until_the_watch_drops_it(api):
    reconciler, watch = watched(api)
    event_pass(reconciler, api)
    api.succeed(job_for(api, "m1", "t1"), {"accuracy": 0.5})
    watch.sync()
    event_pass(reconciler, api)
    watch.sync()
    old = api.evalruns[("ns", job_for(api, "m1", "t1"))]["metadata"]["uid"]
    api.annotate("et", {constants.ANNOTATION_RERUN: constants.RERUN_ALL})
    watch.sync()
    calls = event_pass(reconciler, api)
    assert calls["delete_evalrun"] == 2
    # The watch still shows the deleted EvalRuns: the next pass must not take them for
    # the runs' records (nor the annotation, already removed, for a new request).
    calls = event_pass(reconciler, api)
    assert calls["delete_evalrun"] == 0 and calls["patch_annotations"] == 0, calls
    assert calls["create_evalrun"] == 1, "the chain starts again; the next pass makes t2's"
    new = api.evalruns[("ns", job_for(api, "m1", "t1"))]["metadata"]["uid"]
    assert new != old


class Blocking(FakeApi):
    """A fake whose read of one EvalTask waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = threading.Event()
        self.release = threading.Event()

    def get_evaltask(self, namespace: str, name: str) -> dict:
        if name == "busy":
            self.reading.set()
            assert self.release.wait(10)
        return super().get_evaltask(namespace, name)


def test_a_pass_waiting_for_a_worker_acts_on_what_the_watch_shows_when_it_starts():
    api = Blocking()
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    api.add_evaltask("busy", spec(models=("m9",), tasks=("t9",)))
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK, workers=1)
    watch = FakeWatch(api)
    reconciler.watch(watch)
    asyncio.run(reconciler.trigger("ns", "et"))
    watch.sync()
    job = job_for(api, "m1", "t1")

    async def scenario() -> Counter[str]:
        busy = asyncio.create_task(reconciler.trigger("ns", "busy", fresh=True))
        await asyncio.to_thread(api.reading.wait, 10)  # the one worker is taken
        waiting = asyncio.create_task(reconciler.trigger("ns", "et"))
        await asyncio.sleep(0.05)
        # While that pass waits for the worker, the Job finishes and the watch shows it.
        api.succeed(job, {"accuracy": 0.5})
        watch.sync()
        folded = asyncio.create_task(reconciler.trigger("ns", "et"))
        await asyncio.sleep(0.05)
        before = len(api.calls)
        api.release.set()
        await asyncio.gather(busy, waiting, folded)
        return Counter(api.calls[before:])

    calls = asyncio.run(scenario())
    assert record(api, "m1", "t1")["state"] == "Succeeded"
    # One pass for "et", on the Job as it is now: one record (its result) and the next
    # Job. A snapshot taken when the pass was queued shows the Job unfinished: that pass
    # records it as such, and a second pass records the result.
    assert calls["patch_evalrun_status"] == 1, calls
    assert calls["create_job"] == 2, calls  # "busy"'s Job and "et"'s next one


def body(uid: str, rv: int, kind: str = "Job", owner: str = "et-uid") -> dict:
    return {
        "kind": kind,
        "metadata": {
            "name": uid,
            "uid": uid,
            "resourceVersion": str(rv),
            "labels": {constants.LABEL_EVALTASK_UID: owner},
            "managedFields": [{"manager": "x"}],
        },
    }


EVALTASK = {"kind": constants.EVALTASK.kind, "metadata": {"uid": "et-uid", "resourceVersion": "1"}}


def snap(jobs: list[dict]) -> cache.Snapshot:
    return cache.Snapshot(EVALTASK, [], jobs, [])


def test_writes_show_until_the_watch_catches_up_and_never_resurrect():
    clock = [0.0]
    writes = cache.Writes(clock=lambda: clock[0])
    writes.wrote(body("a", 5))
    assert [j["metadata"]["resourceVersion"] for j in writes.merge(snap([])).jobs] == ["5"]
    # An older version from the watch is replaced by the write's answer...
    assert writes.merge(snap([body("a", 3)])).jobs[0]["metadata"]["resourceVersion"] == "5"
    # ...and once the watch shows it (or newer), the watch's wins and nothing is kept.
    assert writes.merge(snap([body("a", 7)])).jobs[0]["metadata"]["resourceVersion"] == "7"
    assert writes.pending() == 0
    # Created, then deleted by someone else before the watch showed it: gone stays gone.
    writes.wrote(body("b", 9))
    writes.gone(body("b", 10))
    assert writes.merge(snap([])).jobs == []
    # A write the watch never shows is dropped after a while.
    writes.wrote(body("c", 11))
    clock[0] += cache.WRITE_TTL_SECONDS + 1
    assert writes.merge(snap([])).jobs == [] and writes.pending() == 0


def test_a_deletion_hides_the_object_while_the_watch_still_shows_it():
    writes = cache.Writes()
    writes.deleted("et-uid", "a")
    assert writes.merge(snap([body("a", 3), body("b", 4)])).jobs == [body("b", 4)]
    assert writes.pending() == 1
    writes.merge(snap([body("b", 4)]))
    assert writes.pending() == 0, "the watch dropped it: nothing left to hide"


def test_writes_of_one_evaltask_do_not_show_in_another():
    writes = cache.Writes()
    writes.wrote(body("a", 5, owner="other-uid"))
    assert writes.merge(snap([])).jobs == []


def test_slim_drops_managed_fields_and_keeps_the_rest():
    slim = cache.slim(body("a", 5))
    assert "managedFields" not in slim["metadata"]
    assert slim["metadata"]["uid"] == "a" and slim["kind"] == "Job"


def test_a_finished_job_whose_pod_the_watch_has_not_shown_has_its_pods_read(api):
    reconciler, watch = watched(api)
    event_pass(reconciler, api)
    watch.sync()
    api.succeed(job_for(api, "m1", "t1"), {"accuracy": 0.5})
    watch.sync("jobs")  # the pods' watch lags: the Job shows Complete, its pod not at all
    calls = event_pass(reconciler, api)
    assert calls["list_pods"] == 1, "the API server says where the pod is"
    assert not {"get_evaltask", "list_jobs", "list_evalruns"} & set(calls), "the rest is known"
    run = record(api, "m1", "t1")
    assert run["state"] == "Succeeded", run.get("message")


def test_a_started_job_whose_pod_the_watch_has_not_shown_asks_for_no_events(api):
    reconciler, watch = watched(api, clock=lambda: NOW)  # the Job is an hour old by then
    event_pass(reconciler, api)
    api.start(job_for(api, "m1", "t1"))  # the Job counts its pod active
    watch.sync("jobs", "runs", "evaltasks")
    calls = event_pass(reconciler, api)
    assert calls["list_events"] == 0, "its pod exists: nothing to ask FailedCreate events for"


def test_the_watches_keep_of_a_job_all_that_a_waiting_probe_needs():
    """The index keeps a Job's probe container (its timeout is in its env), not the rest
    of the pod template."""
    api = FakeApi()
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",), probeTimeoutSeconds=300))
    reconciler, watch = watched(api, clock=lambda: NOW)
    event_pass(reconciler, api)
    name = job_for(api, "m1", "t1")
    api.pending(name, probe={"running": {"startedAt": "2026-01-01T00:59:30Z"}})
    watch.sync()
    [job] = watch("ns", "et").jobs
    assert set(job["spec"]) <= {"suspend", "activeDeadlineSeconds", "template"}
    event_pass(reconciler, api)
    assert "300s (probeTimeoutSeconds)" in record(api, "m1", "t1")["message"]
