"""A pass's independent writes made at once (reconcile's `writers`): the same records,
status and events as one at a time, and a failure stops what has not started."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from eval_operator import kube, parallel, reconcile
from tests.handler.fake_api import FakeApi
from tests.handler.test_reconcile import CONFIG, NOW, job_for, spec

MODELS = tuple(f"m{i}" for i in range(6))
TASKS = ("t1", "t2", "t3")


def sweep(writers: ThreadPoolExecutor | None) -> FakeApi:
    """Every run of a 6 x 3 sweep to its end: one fails, the others succeed."""
    api = FakeApi()
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    api.add_evaltask("et", spec(models=MODELS, tasks=TASKS))
    for task in TASKS:
        reconcile.reconcile(api, "ns", "et", NOW, CONFIG, writers=writers)
        for i, model in enumerate(MODELS):
            if (model, task) == ("m3", "t2"):
                api.fail(job_for(api, model, task))
            else:
                api.succeed(job_for(api, model, task), {"accuracy": i / 10})
    reconcile.reconcile(api, "ns", "et", NOW, CONFIG, writers=writers)
    return api


def test_writes_made_at_once_leave_what_writes_one_at_a_time_leave():
    one_at_a_time = sweep(None)
    with ThreadPoolExecutor(max_workers=8) as pool:
        at_once = sweep(pool)
    assert at_once.status("et")["phase"] == "Failed"
    assert at_once.status("et") == one_at_a_time.status("et")
    names = sorted(n for _, n in one_at_a_time.evalruns)
    assert sorted(n for _, n in at_once.evalruns) == names
    for name in names:
        assert at_once.run_status(name) == one_at_a_time.run_status(name), name
    # Events keep the plan's order, whichever write answered first.
    assert at_once.events == one_at_a_time.events
    assert len([e for e in at_once.events if e["reason"] == "RunSucceeded"]) == 17


def test_a_failed_write_is_raised_and_the_writes_not_started_are_not_made():
    made: list[str] = []
    second_started = threading.Event()
    release = threading.Event()

    def first() -> None:
        second_started.wait(5)
        raise kube.Transient(503, "ServiceUnavailable", "etcd is not ready")

    def second() -> None:
        second_started.set()
        release.wait(5)  # under way when the first fails: it still ends
        made.append("second")

    def third() -> None:
        made.append("third")

    # Two writers: the first and second run, the third waits for a free writer.
    with ThreadPoolExecutor(max_workers=2) as pool:
        threading.Timer(0.5, release.set).start()
        with pytest.raises(kube.Transient, match="etcd is not ready"):
            parallel.each(pool, [first, second, third])
    assert made == ["second"]
