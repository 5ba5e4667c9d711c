"""`kubectl eval` rendering: an EvalTask's status and EvalRuns as tables, JSON, CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from eval_operator import results_view


def evaltask(name="demo", runs=None, leaderboard=None):
    return {
        "metadata": {"name": name, "namespace": "team-a"},
        "status": {
            "phase": "Failed",
            "progress": "4/4",
            "runs": runs
            or [
                {"model": "small", "task": "capitals", "state": "Succeeded", "score": 0.55},
                {"model": "small", "task": "bfcl", "state": "Failed"},
                {"model": "large", "task": "capitals", "state": "Succeeded", "score": 0.9},
                {"model": "large", "task": "bfcl", "state": "Succeeded", "score": 0.8},
            ],
            "leaderboard": leaderboard
            if leaderboard is not None
            else [
                {"model": "large", "score": 0.85, "rank": 1, "tasks": 2},
                {"model": "small", "score": 0.55, "rank": 2, "tasks": 1},
            ],
        },
    }


def evalrun(model, task, state, metrics=(), score=None, message=""):
    return {
        "metadata": {"name": f"demo-{model}-{task}-0123abcd"},
        "spec": {"model": model, "task": task},
        "status": {
            "state": state,
            "metrics": [{"name": n, "value": v} for n, v in metrics],
            **({"score": score} if score is not None else {}),
            "message": message,
        },
    }


EVALRUNS = [
    evalrun("large", "bfcl", "Succeeded", [("accuracy", 0.8)], 0.8),
    evalrun("small", "capitals", "Succeeded", [("exact_match", 0.55), ("samples", 20)], 0.55),
    evalrun("small", "bfcl", "Failed", message="exit code 1: no such split"),
    evalrun("large", "capitals", "Succeeded", [("exact_match", 0.9), ("samples", 20)], 0.9),
]


def runs(task=None):
    task = task or evaltask()
    return results_view.runs_of(task, EVALRUNS)


def test_results_is_models_by_tasks_then_the_leaderboard():
    out = results_view.results(evaltask(), runs())
    assert out == (
        "demo: Failed, 4/4 runs finished\n"
        "\n"
        "MODEL   CAPITALS   BFCL\n"
        "small   0.55       Failed\n"
        "large   0.9        0.8\n"
        "\n"
        "RANK   MODEL   SCORE   TASKS\n"
        "1      large   0.85    2\n"
        "2      small   0.55    1\n"
    )


def test_wide_shows_every_metric_of_every_run_in_the_status_order():
    out = results_view.results(evaltask(), runs(), "wide").splitlines()
    assert out[2].split() == ["MODEL", "TASK", "STATE", "SCORE", "METRICS"]
    assert out[3].split() == [
        "small",
        "capitals",
        "Succeeded",
        "0.55",
        "exact_match=0.55,",
        "samples=20",
    ]
    assert out[4].split() == ["small", "bfcl", "Failed", "-", "-"]


def test_json_holds_every_metric_and_message():
    doc = json.loads(results_view.results(evaltask(), runs(), "json"))
    assert doc["evaltask"] == "demo" and doc["namespace"] == "team-a"
    assert doc["runs"][0] == {
        "model": "small",
        "task": "capitals",
        "state": "Succeeded",
        "score": 0.55,
        "metrics": {"exact_match": 0.55, "samples": 20.0},
        "message": "",
        "evalrun": "demo-small-capitals-0123abcd",
    }
    assert doc["runs"][1]["message"] == "exit code 1: no such split"
    assert doc["leaderboard"][0]["model"] == "large"


def test_csv_has_a_column_per_metric_of_any_run():
    rows = list(csv.reader(io.StringIO(results_view.results(evaltask(), runs(), "csv"))))
    assert rows[0] == ["model", "task", "state", "score", "exact_match", "samples", "accuracy"]
    assert rows[1] == ["small", "capitals", "Succeeded", "0.55", "0.55", "20.0", ""]
    assert rows[2] == ["small", "bfcl", "Failed", "", "", "", ""]
    assert rows[4] == ["large", "bfcl", "Succeeded", "0.8", "", "", "0.8"]


def test_a_run_without_an_evalrun_yet_is_pending_and_no_leaderboard_says_so():
    task = evaltask(
        runs=[{"model": "small", "task": "capitals", "state": "Pending"}], leaderboard=[]
    )
    out = results_view.results(task, results_view.runs_of(task, []))
    assert "small   Pending" in out
    assert out.endswith("no leaderboard yet: no run has a score\n")


def test_compare_puts_evaltasks_side_by_side():
    other = evaltask(
        "demo-v2",
        runs=[{"model": "large", "task": "capitals", "state": "Succeeded", "score": 0.95}],
        leaderboard=[{"model": "large", "score": 0.95, "rank": 1, "tasks": 1}],
    )
    other_runs = results_view.runs_of(
        other, [evalrun("large", "capitals", "Succeeded", [("exact_match", 0.95)], 0.95)]
    )
    out = results_view.compare([(evaltask(), runs()), (other, other_runs)]).splitlines()
    assert out[0].split() == [
        "MODEL",
        "DEMO/CAPITALS",
        "DEMO/BFCL",
        "DEMO-V2/CAPITALS",
        "DEMO",
        "(ALL)",
        "DEMO-V2",
        "(ALL)",
    ]
    assert out[1].split() == ["small", "0.55", "Failed", "0.55"]
    assert out[2].split() == ["large", "0.9", "0.8", "0.95", "0.85", "0.95"]


def config(name, image, version=None, created="2026-12-01T10:00:00Z"):
    spec = {"image": image, **({"version": version} if version else {})}
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": spec}


NOW = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)


def test_configs_lists_the_namespaces_own_first_then_the_clusters():
    namespaced = [config("bfcl", "team/bfcl", "v2", created="2026-12-01T12:00:00Z")]
    cluster = [config("bfcl", "platform/bfcl:v1"), config("mmlu", "platform/mmlu", "1.0")]
    lines = results_view.configs(namespaced, cluster, NOW).splitlines()
    assert [line.split() for line in lines] == [
        ["KIND", "NAME", "IMAGE", "VERSION", "AGE"],
        ["EvalTaskConfig", "bfcl", "team/bfcl", "v2", "30s"],
        ["ClusterEvalTaskConfig", "bfcl", "platform/bfcl:v1", "-", "2h"],
        ["ClusterEvalTaskConfig", "mmlu", "platform/mmlu", "1.0", "2h"],
    ]


def test_configs_says_why_cluster_configs_are_missing_and_still_shows_the_namespaces():
    out = results_view.configs(
        [config("bfcl", "team/bfcl")], "the API server said 403 Forbidden", NOW
    )
    assert out.splitlines()[1].split()[:2] == ["EvalTaskConfig", "bfcl"]
    assert out.splitlines()[-1] == (
        "ClusterEvalTaskConfigs not listed: the API server said 403 Forbidden"
    )
    doc = json.loads(results_view.configs([], "the API server said 403 Forbidden", NOW, "json"))
    assert doc == {"configs": [], "clusterError": "the API server said 403 Forbidden"}
    assert results_view.configs([], [], NOW) == "no task configurations\n"


def test_configs_as_json_names_each_kind():
    doc = json.loads(
        results_view.configs([], [config("mmlu", "platform/mmlu", "1.0")], NOW, "json")
    )
    assert doc["configs"] == [
        {
            "kind": "ClusterEvalTaskConfig",
            "name": "mmlu",
            "image": "platform/mmlu",
            "version": "1.0",
            "created": "2026-12-01T10:00:00Z",
        }
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        pytest.param(5, "5s", id="seconds"),
        pytest.param(119, "119s", id="under-two-minutes"),
        pytest.param(120, "2m", id="two-minutes"),
        pytest.param(7199, "119m", id="under-two-hours"),
        pytest.param(7200, "2h", id="two-hours"),
        pytest.param(2 * 86400, "2d", id="two-days"),
        pytest.param(-3, "0s", id="clock-skew"),
    ],
)
def test_age_reads_as_kubectls(seconds, shown):
    assert results_view._age(seconds) == shown
