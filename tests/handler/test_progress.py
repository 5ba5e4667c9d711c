"""In-job progress: a running run's EvalRun shows how far its task is, read from the task
container's log (pods/log) at most once per interval per run."""

from __future__ import annotations

from datetime import timedelta

import pytest

from eval_operator import metrics, progress, reconcile
from tests.handler.fake_api import FakeApi
from tests.handler.test_reconcile import NOW, job_for, record, spec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def api():
    the_api = FakeApi()
    the_api.add_secret("key", {"token": "Bearer s3cr3t-token"})
    return the_api


@pytest.fixture
def poller(clock):
    return progress.Poller(30.0, clock)


def run(api, poller):
    """A pass at the poller's time (after NOW), as the operator's clock and its own agree."""
    config = reconcile.Config(runner_image="runner:test", progress=poller)
    now = NOW + timedelta(seconds=poller._clock())
    return reconcile.reconcile(api, "ns", "et", now, config)


def started(api, poller):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api, poller)
    name = job_for(api, "m1", "t1")
    api.start(name)
    return name


def test_a_running_runs_evalrun_shows_the_progress_its_log_tells(api, clock, poller):
    name = started(api, poller)
    api.print(name, "loading\nRequesting API:  45%|████▌     | 9/20 [00:03<00:03,  3.0it/s]\n")
    outcome = run(api, poller)
    assert record(api, "m1", "t1")["progress"] == {
        "done": 9,
        "total": 20,
        "updateTime": "2026-01-01T01:00:00Z",
    }
    assert outcome.requeue_after == pytest.approx(30.0), "the next read is due in an interval"
    assert not outcome.requeue_fresh, "a pass only to read logs may use the watches' copy"
    assert api.status("et")["progress"] == "0/1", "the EvalTask's progress stays run-level"


def test_a_log_is_read_once_per_interval_and_unchanged_progress_is_not_written(api, clock, poller):
    name = started(api, poller)
    api.print(name, "EVAL_PROGRESS done=3 total=10\n")
    run(api, poller)
    reads, patches = api.calls.count("read_pod_log"), api.calls.count("patch_evalrun_status")
    clock.now += 10
    api.print(name, "EVAL_PROGRESS done=5 total=10\n")
    run(api, poller)
    assert api.calls.count("read_pod_log") == reads, "within the interval: no read"
    assert record(api, "m1", "t1")["progress"]["done"] == 3
    clock.now += 20
    run(api, poller)
    assert api.calls.count("read_pod_log") == reads + 1
    assert record(api, "m1", "t1")["progress"]["done"] == 5
    clock.now += 30
    run(api, poller)  # nothing new printed
    assert api.calls.count("read_pod_log") == reads + 2
    assert api.calls.count("patch_evalrun_status") == patches + 1, "only the change is written"


def test_the_last_progress_in_the_log_wins_whatever_its_form(api, clock, poller):
    name = started(api, poller)
    bar = "".join(f"\r  {i * 10}%|███| {i}/10 [00:0{i}<00:01, 1.0it/s]" for i in range(1, 8))
    api.print(name, f"EVAL_PROGRESS done=2 total=10\n{bar}\n")
    run(api, poller)
    assert record(api, "m1", "t1")["progress"]["done"] == 7


def test_a_log_that_cannot_be_read_yet_is_no_failure(api, clock, poller):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    run(api, poller)
    name = job_for(api, "m1", "t1")
    api.start(name)
    pod = api.pods_of(name)[-1]
    # The pod's status says the task runs; the kubelet does not serve its log yet.
    api.pods[("ns", pod)]["status"]["initContainerStatuses"][1]["state"] = {}
    api.pods[("ns", pod)]["status"]["phase"] = "Running"
    run(api, poller)
    assert api.calls.count("read_pod_log") == 1
    assert record(api, "m1", "t1")["state"] == "Running"
    assert record(api, "m1", "t1").get("progress") is None


def test_a_finished_run_keeps_no_progress_and_its_gauge_goes(api, clock, poller):
    name = started(api, poller)
    api.print(name, "EVAL_PROGRESS done=5 total=10\n")
    outcome = run(api, poller)
    metrics.record_status("ns", "et", outcome.status, outcome.runs)
    gauge = ("ns", "et", "m1", "t1")
    assert metrics.RUN_PROGRESS.labels(*gauge)._value.get() == 0.5
    api.succeed(name, {"accuracy": 0.9})
    outcome = run(api, poller)
    metrics.record_status("ns", "et", outcome.status, outcome.runs)
    assert record(api, "m1", "t1").get("progress") is None
    samples = {s.labels.get("task") for s in metrics.RUN_PROGRESS.collect()[0].samples}
    assert "t1" not in samples, "the gauge is for running runs only"
    metrics.forget("ns", "et")


def test_secrets_in_the_log_never_leave_it(api, clock, poller):
    name = started(api, poller)
    api.print(name, "Authorization: Bearer s3cr3t-token 1/2 [00:01<00:01]\n")
    run(api, poller)
    assert record(api, "m1", "t1")["progress"] == {
        "done": 1,
        "total": 2,
        "updateTime": "2026-01-01T01:00:00Z",
    }


def test_without_a_poller_no_log_is_read(api, clock, poller):
    name = started(api, poller)
    api.print(name, "EVAL_PROGRESS done=5 total=10\n")
    reconcile.reconcile(api, "ns", "et", NOW, reconcile.Config(runner_image="runner:test"))
    assert "read_pod_log" not in api.calls


def test_a_count_too_long_to_be_one_is_no_progress_and_fails_no_pass(api, clock, poller):
    name = started(api, poller)
    huge = "9" * 5000  # int() refuses strings of over 4300 digits
    api.print(name, f"EVAL_PROGRESS done={huge} total=10\n{huge}/{huge} [00:01<00:02]\n")
    outcome = run(api, poller)
    assert outcome is not None and outcome.status_written
    assert "progress" not in record(api, "m1", "t1")
    assert record(api, "m1", "t1")["state"] == "Running"
    clock.now += 30
    api.print(name, "EVAL_PROGRESS done=3 total=10\n")
    run(api, poller)
    assert record(api, "m1", "t1")["progress"]["done"] == 3
