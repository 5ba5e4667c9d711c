"""End to end: tasks that write lm-evaluation-harness, evalscope, OpenCompass and BFCL
results, read by the collector.

The tasks copy real results files (tests/runner/fixtures) into their output folder as
`lm_eval --output_path $EVAL_OUTPUT_DIR` and BFCL with BFCL_PROJECT_ROOT=$EVAL_OUTPUT_DIR
would; `results.format` makes the collector in the same pod read them.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.support import BASE_IMAGE, BASE_VERSION, model, namespace
from tests.runner.test_formats import BFCL, EVALSCOPE, LM_EVAL, OPENCOMPASS

pytestmark = pytest.mark.e2e
TOKEN = "Bearer e2e-formats-token"


@pytest.fixture
def api(cluster, api_client):
    with namespace(api_client, TOKEN) as the_api:
        yield the_api


def copying(name: str, script: str, format_: str = "lm-eval") -> dict:
    return {
        "name": name,
        "image": BASE_IMAGE,
        "version": BASE_VERSION,
        "command": ["sh", "-c", script],
        "mounts": [
            {
                "name": "recorded",
                "mountPath": "/recorded",
                "readOnly": True,
                "source": {"configMap": {"name": "lm-eval-results"}},
            }
        ],
        "results": {"format": format_},
        "timeoutSeconds": 120,
    }


def test_frameworks_results_become_the_runs_metrics(api):
    [bfcl_score] = BFCL.rglob("*_score.json")
    [report] = EVALSCOPE.rglob("*.json")
    [summary] = OPENCOMPASS.glob("*/summary/summary_*.csv")
    api.configmap(
        "lm-eval-results",
        {
            "results.json": LM_EVAL.read_text(),
            "bfcl.json": bfcl_score.read_text(),
            "evalscope.json": report.read_text(),
            "summary.csv": summary.read_text(),
        },
    )
    target = '"$EVAL_OUTPUT_DIR/m1/results_2026-12-02T07-35-07.json"'
    write = f'mkdir -p "$EVAL_OUTPUT_DIR/m1" && cp /recorded/results.json {target}'
    bfcl_dir = '"$EVAL_OUTPUT_DIR/score/m1/non_live"'
    bfcl_write = (
        f"mkdir -p {bfcl_dir} && cp /recorded/bfcl.json {bfcl_dir}/BFCL_v4_simple_python_score.json"
    )
    reports = '"$EVAL_OUTPUT_DIR/20261202_074720/reports/m1"'
    evalscope_write = f"mkdir -p {reports} && cp /recorded/evalscope.json {reports}/general_qa.json"
    summaries = '"$EVAL_OUTPUT_DIR/20261202_125818/summary"'
    opencompass_write = (
        f"mkdir -p {summaries} && cp /recorded/summary.csv {summaries}/summary_20261202_125818.csv"
    )
    api.create_evaltask(
        "formats",
        {
            "models": [model("m1", "http://127.0.0.1:9/v1/chat/completions")],
            "tasks": [
                copying("wrote", write),
                copying("forgot", "true"),
                copying("bfcl", bfcl_write, "bfcl"),
                copying("evalscope", evalscope_write, "evalscope"),
                copying("opencompass", opencompass_write, "opencompass"),
            ],
            "probe": False,
        },
    )
    api.wait_phase("formats", ("Succeeded", "Failed"))
    wrote = api.run("formats", "m1", "wrote")
    assert wrote["state"] == "Succeeded", wrote
    assert wrote["metrics"] == {"capitals/exact_match/strict": 0.5, "capitals_raw/exact_match": 0.5}
    assert "fixture-token" not in json.dumps(wrote), "lm-eval's copy of the auth header stays out"
    forgot = api.run("formats", "m1", "forgot")
    assert forgot["state"] == "Failed"
    assert "no results_*.json below /opt/ml/output" in forgot["message"], forgot
    scored = api.run("formats", "m1", "bfcl")
    assert scored["metrics"] == {
        "simple_python/accuracy": 0.49,
        "simple_python/correct_count": 196,
        "simple_python/total_count": 400,
    }, scored
    rouge = api.run("formats", "m1", "evalscope")["metrics"]
    assert rouge["general_qa/rouge/statistic=f1/variant=l"] == 0.5, rouge
    compass = api.run("formats", "m1", "opencompass")["metrics"]
    assert compass == {"capitals/accuracy": 50.0, "colors/accuracy": 25.0}, compass
