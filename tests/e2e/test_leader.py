"""Two replicas, one writer: of two operators, only the Lease holder reconciles.

The session's operator (one process, no election) is stopped for these tests; two
operators with leader election run instead, as the chart's two replicas do. Watches of
the EvalRuns and Jobs record every change the API server makes, so a run that is
duplicated (a Job made twice) or a record that goes from final back to unfinished shows,
however briefly it lasted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localkube.cluster import LocalCluster
from localkube.controlplane import free_port
from tests.e2e.support import TASKS, Api, Recorder, model, task, wait_for

pytestmark = pytest.mark.e2e
TAKEOVER_LIMIT_SECONDS = 30


class Replica:
    """One operator process with leader election on, as a pod of the chart runs it."""

    def __init__(self, cluster: LocalCluster, log: Path, lease: str) -> None:
        self.port = free_port()
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cluster.operator_argv(
                    self.port,
                    "--leader-elect=true",
                    "--leader-elect-namespace=default",
                    f"--leader-elect-name={lease}",
                ),
                env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def metric(self, name: str) -> float | None:
        try:
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def leads(self) -> bool:
        return self.proc.poll() is None and self.metric("eval_operator_leader") == 1.0

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def replicas(cluster: LocalCluster, api: Api, tmp_path: Path) -> Iterator[list[Replica]]:
    """Two electing operators in place of the session's one; it is back afterwards."""
    cluster.stop_operator()
    lease = f"leader-{api.ns}"
    both = [Replica(cluster, tmp_path / f"operator-{i}.log", lease) for i in (0, 1)]
    try:
        yield both
    finally:
        for replica in both:
            replica.stop()
        cluster.start_operator()
        for replica in both:
            text = replica.log.read_text()
            assert "Traceback" not in text, text[-5000:]


def the_leader(replicas: list[Replica], timeout: float) -> Replica:
    def one() -> Replica | None:
        leading = [r for r in replicas if r.leads()]
        assert len(leading) <= 1, "two replicas lead at once"
        return leading[0] if leading else None

    return wait_for(one, timeout, "a replica to lead", interval=0.1)


def test_the_other_replica_takes_over_a_killed_leader_without_duplicating(
    replicas: list[Replica], api: Api, models: Any
) -> None:
    m1, m2 = models[:2]
    recorder = Recorder(api)
    leader = the_leader(replicas, 60)
    [follower] = [r for r in replicas if r is not leader]
    tasks = [task(t, 0.5, SLEEP=2) for t in TASKS[:3]]
    api.create_evaltask(
        "ha", {"models": [model("m1", m1.url), model("m2", m2.url)], "tasks": tasks}
    )
    wait_for(lambda: any(p.spec.node_name for p in api.pods()), 60, "a run's pod")
    # The follower wrote nothing: it is not even watching.
    assert follower.metric("eval_operator_jobs_created_total") == 0.0
    killed = time.monotonic()
    leader.stop(signal.SIGKILL)
    the_leader([follower], TAKEOVER_LIMIT_SECONDS)
    took = time.monotonic() - killed
    status = api.wait_phase("ha", ("Succeeded", "Failed"), timeout=180)
    recorder.close()
    assert status["phase"] == "Succeeded", status
    assert status["progress"] == "6/6"
    assert m1.requests == m2.requests == 3, "a run ran twice"
    assert {name: len(uids) for name, uids in recorder.jobs.items()} == {
        r["name"]: 1 for r in api.runs("ha")
    }, "a Job was made twice"
    assert recorder.reopened() == {}
    assert took < TAKEOVER_LIMIT_SECONDS
    print(f"takeover_seconds={took:.1f}")


def test_fifty_reruns_with_both_replicas_up_run_each_run_once(
    replicas: list[Replica], api: Api, models: Any
) -> None:
    recorder = Recorder(api)
    the_leader(replicas, 60)
    api.create_evaltask(
        "reruns",
        {
            "models": [model(f"m{i}", m.url) for i, m in enumerate(models, 1)],
            "tasks": [task("alpha", 1)],
        },
    )
    api.wait_phase("reruns", ("Succeeded",), timeout=120)
    rounds = 17  # x 3 runs: 51 reruns
    for _ in range(rounds):
        before = {r["uid"] for r in api.runs("reruns")}
        api.custom.patch_namespaced_custom_object(
            "evaloperator.io",
            "v1alpha1",
            api.ns,
            "evaltasks",
            "reruns",
            {"metadata": {"annotations": {"evaloperator.io/rerun": "all"}}},
        )

        def rerun_done(before: set[str] = before) -> bool:
            runs = api.runs("reruns")
            annotations = api.evaltask("reruns")["metadata"].get("annotations") or {}
            return (
                "evaloperator.io/rerun" not in annotations
                and len(runs) == 3
                and not {r["uid"] for r in runs} & before
                and all(r["state"] == "Succeeded" for r in runs)
            )

        wait_for(rerun_done, 120, "the rerun to finish")
    recorder.close()
    assert [m.requests for m in models] == [rounds + 1] * 3, "a run ran twice, or not at all"
    assert recorder.overlaps == [], "a Job was made while its predecessor still existed"
    assert recorder.reopened() == {}
    assert sum(len(u) for u in recorder.jobs.values()) == 3 * (rounds + 1)
