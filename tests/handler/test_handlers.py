"""The kopf-facing Reconciler: serialized passes per EvalTask, bursts coalesced, errors
mapped to kopf's retry."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import UTC, datetime

import kopf

from eval_operator import handlers, kube, metrics, progress, reconcile
from tests.handler.fake_api import FakeApi
from tests.handler.test_reconcile import CONFIG, spec

CLOCK = lambda: datetime(2026, 1, 1, tzinfo=UTC)  # noqa: E731


class SlowApi(FakeApi):
    """Counts concurrent passes: get_evaltask is where each pass starts."""

    def __init__(self):
        super().__init__()
        self.inflight = 0
        self.max_inflight = 0
        self.passes = 0
        self.lock = threading.Lock()

    def get_evaltask(self, namespace, name):
        with self.lock:
            self.inflight += 1
            self.passes += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        time.sleep(0.05)
        try:
            return super().get_evaltask(namespace, name)
        finally:
            with self.lock:
                self.inflight -= 1


def test_a_burst_of_events_runs_serialized_and_coalesced():
    api = SlowApi()
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)

    async def burst():
        await asyncio.gather(*(reconciler.trigger("ns", "et") for _ in range(20)))

    asyncio.run(burst())
    assert api.max_inflight == 1
    assert 1 <= api.passes <= 2, "twenty events collapse into at most two passes"
    assert len(api.jobs) == 2


def test_different_evaltasks_do_not_wait_for_each_other():
    api = SlowApi()
    api.add_secret("key", {"token": "t"})
    for name in ("a", "b", "c"):
        api.add_evaltask(name, spec(models=("m1",), tasks=("t1",)))
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)

    async def all_three():
        await asyncio.gather(*(reconciler.trigger("ns", n) for n in ("a", "b", "c")))

    asyncio.run(all_three())
    assert api.max_inflight >= 2
    assert len(api.jobs) == 3


def test_workers_bound_how_many_passes_run_at_once():
    for workers, expected in ((2, 2), (8, 6)):
        api = SlowApi()
        api.add_secret("key", {"token": "t"})
        names = [f"et-{i}" for i in range(6)]
        for name in names:
            api.add_evaltask(name, spec(models=("m1",), tasks=("t1",)))
        reconciler = handlers.Reconciler(lambda api=api: api, CONFIG, CLOCK, workers=workers)

        async def all_of_them(reconciler=reconciler, names=names):
            await asyncio.gather(*(reconciler.trigger("ns", n) for n in names))

        asyncio.run(all_of_them())
        assert api.max_inflight == expected, workers


class FlakyApi(FakeApi):
    """Refuses the first `failures` Job lists, as during an etcd leader change."""

    def __init__(self, failures):
        super().__init__()
        self.failures = failures

    def list_jobs(self, namespace, selector):
        if self.failures:
            self.failures -= 1
            raise kube.Transient(503, "ServiceUnavailable", "etcd leader changed")
        return super().list_jobs(namespace, selector)


def test_an_api_error_is_counted_and_the_pass_retried_later(monkeypatch):
    monkeypatch.setattr(handlers, "RETRY_DELAY_SECONDS", 0.05)
    api = FlakyApi(failures=1)
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    before = metrics.RECONCILE_TOTAL.labels(metrics.RESULT_ERROR)._value.get()

    async def pass_then_wait():
        await reconciler.trigger("ns", "et")
        assert api.jobs == {}
        await asyncio.sleep(0.3)

    asyncio.run(pass_then_wait())
    assert metrics.RECONCILE_TOTAL.labels(metrics.RESULT_ERROR)._value.get() == before + 1
    assert len(api.jobs) == 2, "the retry pass ran by itself"


def test_only_news_about_an_evaltask_triggers_a_pass():
    reconciler = handlers.Reconciler(lambda: FakeApi(), CONFIG, CLOCK)
    body = {"metadata": {"generation": 1, "annotations": {}}}
    assert reconciler.changed("ns", "et", body)
    assert not reconciler.changed("ns", "et", body), "our own status write is no news"
    assert reconciler.changed("ns", "et", {"metadata": {"generation": 2}})
    rerun = {"metadata": {"generation": 2, "annotations": {"evaloperator.io/rerun": "all"}}}
    assert reconciler.changed("ns", "et", rerun)
    reconciler.forget("ns", "et")
    assert reconciler.changed("ns", "et", rerun), "after a restart or delete, it is news"


def test_a_finished_evaltask_asks_for_no_more_passes():
    api = FakeApi()
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    assert reconciler._pass("ns", "et") == (CONFIG.requeue_active, True)
    [name] = api.job_names()
    api.succeed(name, {"a": 1.0})
    assert reconciler._pass("ns", "et") == (None, True)


def test_jobs_created_are_counted():
    api = FakeApi()
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    before = metrics.JOBS_CREATED_TOTAL._value.get()
    asyncio.run(reconciler.trigger("ns", "et"))
    assert metrics.JOBS_CREATED_TOTAL._value.get() == before + 2


def test_kopf_asks_the_api_server_for_our_own_jobs_pods_and_evalruns_only():
    import kopf

    settings = kopf.OperatorSettings()
    handlers.configure(settings, [])
    ours = ["app.kubernetes.io/managed-by=eval-operator"]
    for group, version, plural in (handlers.JOBS, handlers.PODS, handlers.EVALRUNS):
        resource = kopf.Resource(group, version, plural)
        assert settings.watching.label_selectors.collect(resource) == ours, plural
    # EvalTasks are the users': they carry no label of ours, and every one is served.
    evaltasks = kopf.Resource("evaloperator.io", "v1alpha1", "evaltasks")
    assert settings.watching.label_selectors.collect(evaltasks) == []
    assert settings.scanning.disabled is False
    handlers.configure(settings, ["team-a"])
    assert settings.scanning.disabled is True


def test_kopf_keeps_no_copy_of_the_bodies_it_sees():
    """kopf's default last-handled storage deep-copies every body of every event (and
    would annotate the object with it for create/update handlers, which we have none of)."""
    import kopf

    settings = kopf.OperatorSettings()
    handlers.configure(settings, [])
    storage = settings.persistence.diffbase_storage
    pod = kopf.Body({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"x": [1] * 100}})
    assert storage.build(body=pod) == {}
    patch = kopf.Patch()
    storage.store(body=pod, patch=patch, essence=storage.build(body=pod))
    assert not patch and storage.fetch(body=pod) is None


def test_only_child_events_that_carry_news_run_a_pass():
    """The operator's own EvalRun writes and Job creates run no pass; what others do does."""
    api = SlowApi()
    uid = api.add_evaltask("sweep", spec())["metadata"]["uid"]
    handlers.RECONCILER = handlers.Reconciler(lambda: api, CONFIG, clock=CLOCK)
    index = {uid: ["sweep"]}
    body = {"metadata": {"labels": {"evaloperator.io/evaltask-uid": uid}}}
    cases = [
        (handlers.evalrun_event, "ADDED", 0),
        (handlers.evalrun_event, "MODIFIED", 0),
        (handlers.evalrun_event, None, 0),  # kopf's initial listing: the EvalTask's covers it
        (handlers.evalrun_event, "DELETED", 1),
        (handlers.job_event, "ADDED", 0),
        (handlers.job_event, "MODIFIED", 1),
        (handlers.job_event, "DELETED", 1),
        (handlers.pod_event, "ADDED", 1),
        (handlers.pod_event, "MODIFIED", 1),
        (handlers.pod_event, "DELETED", 1),
    ]
    try:
        for i, (handler, kind, passes) in enumerate(cases):
            before = api.passes
            one = {"metadata": {**body["metadata"], "uid": f"child-{i}"}}  # each one new
            asyncio.run(handler(type=kind, body=one, namespace="ns", evaltasks_by_uid=index))
            assert api.passes - before == passes, (handler.__name__, kind)
    finally:
        handlers.RECONCILER = None


def test_a_job_or_pod_event_that_changes_nothing_a_pass_reads_runs_no_pass():
    api = SlowApi()
    uid = api.add_evaltask("sweep", spec())["metadata"]["uid"]
    handlers.RECONCILER = handlers.Reconciler(lambda: api, CONFIG, clock=CLOCK)
    index = {uid: ["sweep"]}
    labels = {"evaloperator.io/evaltask-uid": uid}
    job = {"metadata": {"uid": "job-1", "labels": labels}, "status": {"active": 1}}
    running = {"name": "task", "state": {"running": {"startedAt": "t0"}}}
    pod = {
        "metadata": {"uid": "pod-1", "labels": labels},
        "status": {"phase": "Pending", "initContainerStatuses": [running]},
    }

    def passes(handler, kind, body):
        before = api.passes
        asyncio.run(handler(type=kind, body=body, namespace="ns", evaltasks_by_uid=index))
        return api.passes - before

    try:
        assert passes(handlers.job_event, "MODIFIED", job) == 1
        # The Job controller removes a pod's finalizer, counts it: nothing a pass reads.
        bookkeeping = {**job, "metadata": {**job["metadata"], "resourceVersion": "2"}}
        assert passes(handlers.job_event, "MODIFIED", bookkeeping) == 0
        done = {**job, "status": {"succeeded": 1, "conditions": [{"type": "Complete"}]}}
        assert passes(handlers.job_event, "MODIFIED", done) == 1
        assert passes(handlers.pod_event, "MODIFIED", pod) == 1
        assert passes(handlers.pod_event, "MODIFIED", pod) == 0
        ended = {"name": "task", "state": {"terminated": {"exitCode": 0, "message": "ok"}}}
        finished = {**pod, "status": {"phase": "Pending", "initContainerStatuses": [ended]}}
        assert passes(handlers.pod_event, "MODIFIED", finished) == 1
        waiting = {"name": "task", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
        backoff = {**pod, "status": {"phase": "Pending", "initContainerStatuses": [waiting]}}
        assert passes(handlers.pod_event, "MODIFIED", backoff) == 1
        assert passes(handlers.pod_event, "DELETED", backoff) == 1
        # Gone and forgotten: the same state again (a new pod object) is news.
        assert passes(handlers.pod_event, "MODIFIED", backoff) == 1
    finally:
        handlers.RECONCILER = None


def test_a_deleted_evaltask_leaves_no_progress_read_times_behind():
    poller = progress.Poller(30.0, lambda: 0.0)
    config = reconcile.Config(runner_image="runner:test", progress=poller)
    reconciler = handlers.Reconciler(FakeApi, config, CLOCK)
    assert poller.take("uid-1/pod-a") and poller.take("uid-2/pod-b")
    reconciler.forget("ns", "et", "uid-1")
    assert poller.wait("uid-1/pod-a") == 0.0, "forgotten with its EvalTask"
    assert poller.wait("uid-2/pod-b") == 30.0, "another EvalTask's stay"


class BuggyApi(FakeApi):
    """Lists of Jobs raise what no API error is, as a bug in a pass would, `failures` times."""

    def __init__(self, failures):
        super().__init__()
        self.failures = failures

    def list_jobs(self, namespace, selector):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug of the operator's own")
        return super().list_jobs(namespace, selector)


def test_an_exception_in_a_pass_is_logged_counted_said_and_retried_with_backoff(caplog):
    api = BuggyApi(failures=3)
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    before = metrics.RECONCILE_TOTAL.labels(metrics.RESULT_ERROR)._value.get()
    delays = [reconciler._pass("ns", "et")[0] for _ in range(3)]
    first = handlers.RETRY_DELAY_SECONDS
    assert delays == [first, 2 * first, 4 * first], "backs off, never stops retrying"
    assert metrics.RECONCILE_TOTAL.labels(metrics.RESULT_ERROR)._value.get() == before + 3
    failed = [r for r in caplog.records if "the pass failed" in r.getMessage()]
    assert len(failed) == 3 and all(r.exc_info for r in failed), "with its traceback"
    cond = next(c for c in api.status("et")["conditions"] if c["type"] == "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ReconcileFailed")
    assert "RuntimeError" in cond["message"] and "bug" not in cond["message"]
    assert [e["reason"] for e in api.events] == ["ReconcileFailed"], "said once, not per pass"
    assert reconciler._pass("ns", "et") == (CONFIG.requeue_active, True)
    cond = next(c for c in api.status("et")["conditions"] if c["type"] == "Progressing")
    assert cond["reason"] != "ReconcileFailed", "a pass that gets through says it again"
    api.failures = 1
    assert reconciler._pass("ns", "et")[0] == first, "the backoff starts over"


def test_the_retry_timer_outlives_an_exception(monkeypatch):
    monkeypatch.setattr(handlers, "RETRY_DELAY_SECONDS", 0.05)
    api = BuggyApi(failures=2)
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)

    async def pass_then_wait():
        await reconciler.trigger("ns", "et")
        assert api.jobs == {}
        await asyncio.sleep(0.5)

    asyncio.run(pass_then_wait())
    assert len(api.jobs) == 2, "the retries ran by themselves, the second one got through"


def test_a_refusal_that_stops_a_pass_is_said_on_the_evaltask():
    api = FakeApi()
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    words = 'evalruns.evaloperator.io is forbidden: cannot list resource "evalruns"'
    api.inject("list", "EvalRun", 403, words)
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    assert reconciler._pass("ns", "et") == (handlers.RETRY_DELAY_SECONDS, True)
    cond = next(c for c in api.status("et")["conditions"] if c["type"] == "Progressing")
    assert (cond["status"], cond["reason"]) == ("False", "ReconcileFailed")
    assert words in cond["message"]
    assert [e["reason"] for e in api.events] == ["ReconcileFailed"]


def test_a_transient_error_is_retried_without_a_word_on_the_evaltask():
    api = FlakyApi(failures=1)
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    assert reconciler._pass("ns", "et") == (handlers.RETRY_DELAY_SECONDS, True)
    assert api.status("et") == {} and api.events == []


def test_kopf_retries_a_failing_request_for_as_long_as_it_fails_and_posts_no_core_events():
    settings = kopf.OperatorSettings()
    handlers.configure(settings, [])
    delays = list(itertools.islice(iter(settings.networking.error_backoffs), 60))
    # The first backoffs, then every 10 s: an API server away for longer than a minute
    # (their sum) no longer makes kopf give up a watch for good.
    assert delays[:8] == [0.5, 0.5, 1, 1, 2, 3, 5, 8]
    assert delays[8:] == [10.0] * 52
    assert list(itertools.islice(iter(settings.networking.error_backoffs), 3)) == [0.5, 0.5, 1]
    # kopf's own warnings would be core events, which the operator may not create.
    assert settings.posting.enabled is False
