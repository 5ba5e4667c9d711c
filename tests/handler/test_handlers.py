"""The kopf-facing Reconciler: serialized passes per EvalTask, bursts coalesced, errors
mapped to kopf's retry."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import kopf
import pytest

from eval_operator import handlers, kube, metrics
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


class BrokenApi(FakeApi):
    def list_jobs(self, namespace, selector):
        raise kube.Transient(503, "ServiceUnavailable", "etcd leader changed")


def test_api_errors_become_temporary_errors_and_are_counted():
    api = BrokenApi()
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    before = metrics.RECONCILE_TOTAL.labels(metrics.RESULT_ERROR)._value.get()
    with pytest.raises(kopf.TemporaryError, match="etcd leader changed"):
        asyncio.run(reconciler.trigger("ns", "et"))
    assert metrics.RECONCILE_TOTAL.labels(metrics.RESULT_ERROR)._value.get() == before + 1


def test_jobs_created_are_counted():
    api = FakeApi()
    api.add_secret("key", {"token": "t"})
    api.add_evaltask("et", spec())
    reconciler = handlers.Reconciler(lambda: api, CONFIG, CLOCK)
    before = metrics.JOBS_CREATED_TOTAL._value.get()
    asyncio.run(reconciler.trigger("ns", "et"))
    assert metrics.JOBS_CREATED_TOTAL._value.get() == before + 2


def test_handlers_find_the_evaltask_of_a_job():
    body = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "x"},
                {"apiVersion": "evaloperator.io/v1alpha1", "kind": "EvalTask", "name": "bfcl"},
            ]
        }
    }
    assert handlers._owner_name(body) == "bfcl"
    assert handlers._owner_name({"metadata": {}}) is None
