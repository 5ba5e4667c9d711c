"""Faults on the real cluster: the operator killed again and again, and the API server and
etcd gone for a minute. Nothing is lost, nothing runs twice, and the operator recovers by
itself. Watches of the EvalRuns and Jobs (support.Recorder) see every change the API server
made meanwhile, so a Job made twice or a record reopened shows however briefly it lasted.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from localkube.cluster import LocalCluster
from tests.e2e.support import TASKS, Api, Recorder, model, task, wait_for

pytestmark = pytest.mark.e2e
KILLS = 10
OUTAGE_SECONDS = 60


def healthz(cluster: LocalCluster) -> tuple[int, str]:
    url = f"http://127.0.0.1:{cluster.metrics_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def assert_each_run_ran_once(api: Api, name: str, recorder: Recorder, runs: int) -> None:
    records = api.runs(name)
    assert len(records) == runs
    for record in records:
        assert record["state"] == "Succeeded", record
        assert record["attempts"] == 1, record
        assert record["metrics"]["score"] == 0.5, record
    jobs = {job: len(uids) for job, uids in recorder.jobs.items()}
    assert jobs == {r["name"]: 1 for r in records}, "a Job was made twice"
    assert recorder.reopened() == {}, "a final record went back to unfinished"


def test_an_operator_killed_ten_times_runs_each_run_once_and_records_every_result(
    cluster: LocalCluster, api: Api, models: Any
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")  # the moments of the kills, to replay a failure
    moments = random.Random(seed)
    recorder = Recorder(api)
    api.create_evaltask(
        "killed",
        {
            "models": [model(f"m{i}", m.url) for i, m in enumerate(models, 1)],
            "tasks": [task(t, 0.5, SLEEP=4) for t in TASKS],
        },
    )
    unfinished_at_kill = []
    for _ in range(KILLS):
        time.sleep(moments.uniform(0.1, 3.0))
        unfinished_at_kill.append(api.status("killed").get("completed", 0))
        cluster.stop_operator(kill=True)
        cluster.start_operator()
    status = api.wait_phase("killed", ("Succeeded", "Failed"), timeout=300)
    recorder.close()
    assert status["phase"] == "Succeeded", status
    assert (status["progress"], status["completed"], status["succeeded"]) == ("12/12", 12, 12)
    assert_each_run_ran_once(api, "killed", recorder, 12)
    assert [m.requests for m in models] == [4, 4, 4], "a run ran twice, or not at all"
    # The kills landed while runs were unfinished, not after the end.
    assert unfinished_at_kill[-1] < 12, unfinished_at_kill


def test_the_api_server_and_etcd_gone_for_a_minute_lose_nothing(
    cluster: LocalCluster, api: Api, models: Any
) -> None:
    m1, m2 = models[:2]
    recorder = Recorder(api)
    api.create_evaltask(
        "outage",
        {
            "models": [model("m1", m1.url), model("m2", m2.url)],
            "tasks": [task(t, 0.5, SLEEP=8) for t in TASKS[:3]],
        },
    )
    wait_for(lambda: any(r["state"] == "Running" for r in api.runs("outage")), 60, "a running run")
    recorder.close()  # its watches end with the API server; the Jobs are compared below
    made_before = {job: list(uids) for job, uids in recorder.jobs.items()}
    control_plane = cluster.control_plane
    log_from = cluster.operator_log.stat().st_size
    control_plane.stop_component("kube-apiserver")
    control_plane.stop_component("etcd")
    down = time.monotonic()

    # While it is down, /healthz says so, and why.
    def failing() -> str | None:
        code, body = healthz(cluster)
        return body if code == 503 else None

    body = wait_for(failing, OUTAGE_SECONDS - 5, "/healthz to fail while it is down", 1)
    said_after = time.monotonic() - down
    assert "API server" in body, body
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down)))
    control_plane.start_component("etcd")
    control_plane.start_component("kube-apiserver")
    back = time.monotonic()
    recorder = Recorder(api)
    status = api.wait_phase("outage", ("Succeeded", "Failed"), timeout=300)
    recovered = time.monotonic() - back
    recorder.close()
    assert status["phase"] == "Succeeded", status
    assert status["progress"] == "6/6"
    assert m1.requests == m2.requests == 3, "a run ran twice, or not at all"
    for job, uids in made_before.items():
        assert recorder.jobs.get(job, uids) == uids, "a Job was made again after the outage"
    records = api.runs("outage")
    assert all(r["state"] == "Succeeded" and r["attempts"] == 1 for r in records), records
    assert recorder.reopened() == {}
    wait_for(lambda: healthz(cluster)[0] == 200, 60, "/healthz to recover")
    log = cluster.operator_log.read_text()[log_from:]
    assert "API server" in log and "unreachable" in log, log[-3000:]
    print(f"healthz_failed_after_s={said_after:.1f} recovered_in_s={recovered:.1f}")
