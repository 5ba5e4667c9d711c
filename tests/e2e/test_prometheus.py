"""A real Prometheus scrapes the operator during a run and is queried over its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localkube.controlplane import free_port
from tests.e2e.support import model, task, wait_for

pytestmark = pytest.mark.e2e


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict]:
        query = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=5) as response:
            doc = json.load(response)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def targets_up(self) -> bool:
        return bool(self.query('up{job="eval-operator"} == 1'))


@pytest.fixture(scope="module")
def prometheus(cluster, tmp_path_factory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: `make deps` installs Debian's package"
    folder: Path = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: eval-operator\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{cluster.metrics_port}']}}]\n"
    )
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_for(
            lambda: _ready(server) and server.targets_up(), 60, "Prometheus to scrape the operator"
        )
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(server: Prometheus) -> bool:
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_prometheus_sees_progress_results_and_their_removal(prometheus, api, models):
    m1, m2 = models[:2]
    api.create_evaltask(
        "watched",
        {
            "models": [model("m1", m1.url), model("m2", m2.url)],
            "tasks": [task("alpha", 0.25, SLEEP=1), task("beta", 0.75, SLEEP=1)],
        },
    )
    selector = f'namespace="{api.ns}",evaltask="watched"'
    api.wait_phase("watched", ("Succeeded",))

    def progress() -> float | None:
        result = prometheus.query(f"eval_operator_evaltask_progress_ratio{{{selector}}}")
        return float(result[0]["value"][1]) if result else None

    wait_for(lambda: progress() == 1.0, 30, "progress 1 in Prometheus")
    lowest = prometheus.query(
        f"min_over_time(eval_operator_evaltask_progress_ratio{{{selector}}}[10m])"
    )
    assert float(lowest[0]["value"][1]) < 1.0, "progress rose during the run"

    # Every result gauge equals the metric in status, and there is no other.
    expected = {
        (r["model"], r["task"], name): value
        for r in api.runs("watched")
        for name, value in r["metrics"].items()
    }

    def exported() -> dict:
        result = prometheus.query(f"eval_operator_run_metric{{{selector}}}")
        return {
            (s["metric"]["model"], s["metric"]["task"], s["metric"]["metric"]): float(s["value"][1])
            for s in result
        }

    wait_for(lambda: exported() == expected, 30, "the result gauges to equal the status")

    succeeded = prometheus.query(f'eval_operator_evaltask_runs{{{selector},state="Succeeded"}}')
    assert float(succeeded[0]["value"][1]) == 4
    durations = prometheus.query('eval_operator_run_duration_seconds_count{task="alpha"}')
    assert durations and float(durations[0]["value"][1]) >= 2

    api.custom.delete_namespaced_custom_object(
        "evaloperator.io", "v1alpha1", api.ns, "evaltasks", "watched"
    )
    wait_for(
        lambda: (
            not prometheus.query(f"eval_operator_run_metric{{{selector}}}")
            and not prometheus.query(f"eval_operator_evaltask_progress_ratio{{{selector}}}")
        ),
        30,
        "the deleted EvalTask's series to go",
    )
