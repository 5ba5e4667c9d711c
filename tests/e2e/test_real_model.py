"""The real-model tier: real evaluation frameworks in our images, on a real model.

SmolLM2-135M-Instruct, served by llama.cpp on this machine and reachable only with the key
in a Secret, is evaluated by two EvalTask tasks on the real node:

- lm-evaluation-harness 0.4.13 in examples/images/lm-eval, on a local generation task;
  the collector reads lm-eval's results file (`results.format: lm-eval`);
- BFCL (bfcl-eval 2026.3.23) in examples/images/bfcl, with the custom-evaluation example's
  run.sh, evaluate.sh and save_metric.py and its model registered by MODEL_NAME, on the
  first 10 cases of simple_python (the whole set takes the small model half an hour).

The EvalTask, its Secret and the cases are examples/real.yaml, as `make demo-real` applies.

The scores in the EvalRuns must equal what the tools themselves printed in the task's log.
The build and run times are printed as name=value lines (pytest -s shows them).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from eval_operator import constants
from localkube import images as images_mod
from localkube import llama, realnode
from localkube.cluster import ROOT, LocalCluster, load_documents
from tests.e2e.support import Api, namespace

pytestmark = [pytest.mark.e2e, pytest.mark.real_model]
# The example `make demo-real` applies: a Secret, the BFCL cases, the EvalTask.
SECRET, CASES, EVALTASK = load_documents(ROOT / "examples" / "real.yaml")
KEY = SECRET["stringData"]["token"].removeprefix("Bearer ")
MODEL_URL = urlsplit(EVALTASK["spec"]["models"][0]["url"])
NAME = EVALTASK["metadata"]["name"]


def report(name: str, value: float) -> None:
    print(f"{name}={value:.1f}", flush=True)


@pytest.fixture(scope="module")
def smollm2(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[llama.LlamaServer]:
    """Listening on the node's address (which the cluster adds), where pods reach it."""
    started = time.monotonic()
    llama.venv()
    report("real_model_server_install_s", time.monotonic() - started)
    log = tmp_path_factory.mktemp("llama") / "server.log"
    started = time.monotonic()
    assert MODEL_URL.hostname == realnode.pod_address_of_host(), MODEL_URL
    with llama.LlamaServer(MODEL_URL.hostname, MODEL_URL.port, KEY, log) as server:
        report("real_model_server_start_s", time.monotonic() - started)
        yield server


@pytest.fixture(scope="module")
def example_images(cluster: LocalCluster) -> dict[str, Path]:
    started = time.monotonic()
    built = images_mod.default().examples()
    report("real_model_images_build_s", time.monotonic() - started)
    assert cluster.kubelet is not None
    for archive in built.values():
        cluster.kubelet.load(archive)
    return built


@pytest.fixture
def api(cluster, api_client) -> Iterator[Api]:
    with namespace(api_client, f"Bearer {KEY}", prefix="real") as the_api:
        yield the_api


def task_log(api: Api, task: str) -> str:
    [pod] = [p for p in api.pods() if p.metadata.labels.get(constants.LABEL_TASK) == task]
    return str(
        api.core.read_namespaced_pod_log(
            pod.metadata.name, api.ns, container=constants.TASK_CONTAINER
        )
    )


def lm_eval_printed(log: str, task: str, metric: str, filter_: str) -> float:
    """The value in lm-eval's own results table: |task|version|filter|n-shot|metric|...|
    (a task's further filters follow on rows whose task cell is empty)."""
    current = ""
    for line in log.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or line.lstrip()[:1] != "|":
            continue
        current = cells[0] or current
        if current == task and cells[2] == filter_ and cells[4] == metric:
            return float(cells[6])
    raise AssertionError(f"lm-eval printed no {task} {metric} {filter_} row:\n{log[-3000:]}")


def bfcl_printed(log: str) -> float:
    """BFCL's checker prints `Test completed: simple_python. 🎯 Accuracy: 45.00%`."""
    found = re.findall(r"Test completed: simple_python\. .*Accuracy: ([0-9.]+)%", log)
    assert found, f"BFCL printed no accuracy:\n{log[-3000:]}"
    return float(found[-1]) / 100


def test_real_frameworks_score_a_real_model(api: Api, smollm2, example_images) -> None:
    api.secret("smollm2-key", SECRET["stringData"])
    api.configmap("bfcl-cases", CASES["data"])
    api.create_evaltask(NAME, EVALTASK["spec"])
    started = time.monotonic()
    status = api.wait_phase(NAME, ("Succeeded", "Failed"), timeout=2400)
    report("real_model_evaltask_s", time.monotonic() - started)
    capitals = api.run(NAME, "smollm2", "capitals")
    scored = api.run(NAME, "smollm2", "bfcl-simple-python")
    assert status["phase"] == "Succeeded", (capitals, scored)

    printed = lm_eval_printed(task_log(api, "capitals"), "capitals", "exact_match", "city")
    score = capitals["metrics"]["capitals/exact_match/city"]
    assert round(score, 4) == printed, (capitals, printed)
    # A real answer key: a model that answered nothing right, or everything, is not SmolLM2.
    assert 0 < score < 1, capitals
    assert KEY not in json.dumps(capitals), "lm-eval's copy of the auth header stays out"

    accuracy = scored["metrics"]["accuracy"]
    assert accuracy == pytest.approx(bfcl_printed(task_log(api, "bfcl-simple-python")), abs=5e-5)
    print(f"real_model_lm_eval_exact_match={score}\nreal_model_bfcl_accuracy={accuracy}")
