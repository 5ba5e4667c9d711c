"""The probe (first init container): stamps the output folder, waits for the model from
the pod's network with the run's auth header, and fails with the last error on timeout.
Against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
import time

from eval_runner import collect, probe, results
from localkube.mockmodel import MockModel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env(tmp_path, url, **extra):
    return {
        "EVAL_OUTPUT_DIR": str(tmp_path / "out"),
        "EVAL_INFERENCE_URL": url,
        "EVAL_AUTHORIZATION_HEADER_KEY": "X-Api-Key",
        "EVAL_AUTHORIZATION_HEADER_VALUE": "secret-123",
        "EVAL_RUN_DIR": str(tmp_path / "run"),
        **extra,
    }


def test_the_probe_stamps_and_passes_once_the_model_answers_with_the_auth_header(tmp_path):
    with MockModel() as model:  # a GET gets a 405: still an answer
        code = probe.probe(env(tmp_path, model.url), tmp_path / "termination")
    assert code == 0
    assert (tmp_path / "run" / results.STARTED_MARKER).exists()
    assert model.gets and model.gets[0]["X-Api-Key"] == "secret-123"


def test_the_probe_gives_up_after_its_timeout_with_the_last_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"  # nothing listens
    began = time.monotonic()
    code = probe.probe(env(tmp_path, url, EVAL_PROBE_TIMEOUT_SECONDS="1"), tmp_path / "term")
    assert code == 1
    assert time.monotonic() - began < 5
    message = (tmp_path / "term").read_text()
    assert "gave no HTTP answer within 1s (probeTimeoutSeconds)" in message
    assert "ClientConnectorError" in message
    assert "secret-123" not in message


def test_the_probe_waits_for_a_model_that_comes_up_late(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(
            probe.probe(env(tmp_path, url, EVAL_PROBE_TIMEOUT_SECONDS="20"), tmp_path / "t")
        )
    )
    worker.start()
    time.sleep(0.8)
    with MockModel(port=port) as late:
        worker.join(timeout=15)
    assert result == [0]
    assert late.gets


def test_probe_false_stamps_without_any_request(tmp_path):
    with MockModel() as model:
        code = probe.probe(env(tmp_path, model.url, EVAL_PROBE="false"), tmp_path / "t")
    assert code == 0 and model.gets == []
    assert (tmp_path / "run" / results.STARTED_MARKER).exists()


def test_a_results_file_older_than_the_runs_pod_is_not_this_runs_result(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"metrics": [{"name": "acc", "value": 0.9}]}')
    old = time.time() - 3600
    os.utime(out / "metrics.json", (old, old))  # left by the previous run on the volume
    run_dir = tmp_path / "run"  # the pod's own folder: fresh in every pod
    probe.stamp(run_dir)
    assert collect.collect(out, tmp_path / "term", run_dir) == 1
    message = (tmp_path / "term").read_text()
    assert "older than this run's pod" in message
    (out / "metrics.json").write_text('{"metrics": [{"name": "acc", "value": 0.5}]}')
    assert collect.collect(out, tmp_path / "term", run_dir) == 0


def test_the_collector_refuses_more_metrics_than_a_record_holds(tmp_path):
    items = ",".join(f'{{"name": "m{i}", "value": 1}}' for i in range(results.MAX_METRICS + 1))
    (tmp_path / "metrics.json").write_text(f'{{"metrics": [{items}]}}')
    assert collect.collect(tmp_path, tmp_path / "term") == 1
    assert "401 metrics; a run records at most 400" in (tmp_path / "term").read_text()
    long = "n" * (results.MAX_NAME_LENGTH + 1)
    (tmp_path / "metrics.json").write_text(f'{{"metrics": [{{"name": "{long}", "value": 1}}]}}')
    assert collect.collect(tmp_path, tmp_path / "term") == 1
    assert "at most 100 allowed" in (tmp_path / "term").read_text()
