"""What a run leaves in EVAL_OUTPUT_DIR and says on stdout, in both modes."""

from __future__ import annotations

import json

import pytest

from eval_runner import results, run
from localkube.mockmodel import MockModel, Reply, answer_from
from tests.runner.support import (
    environment,
    journal,
    metrics_file,
    qa_dataset,
    questions,
    run_with,
    write_dataset,
)


def test_the_output_folder_after_a_run(tmp_path, capsys):
    answers = questions(10)
    answers["q04"] = "wrong"
    output = tmp_path / "out"
    with MockModel(answer_from(answers)) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 10),
            output,
            EVAL_SCORER="exact_match,contains",
        )
        assert run.main(environ=env) == 0
    stdout = capsys.readouterr().out
    metrics = metrics_file(output)
    assert list(metrics)[:4] == ["exact_match", "contains", "samples", "errors"]
    assert (metrics["exact_match"], metrics["samples"], metrics["errors"]) == (0.9, 10, 0)
    assert len(results.encode(metrics)) < 1024, "far below the termination message's limit"
    reviews = journal(output / "reviews.jsonl")
    assert [r["id"] for r in reviews] == list(answers)
    assert reviews[3]["scores"] == {"exact_match": 0.0, "contains": 0.0}
    assert reviews[3]["reasons"]["exact_match"] == "'wrong' is not 'a04'"
    assert reviews[3]["prediction"] == "wrong" and reviews[3]["answer"] == ["a04"]
    report = json.loads((output / "report.json").read_text())
    assert report["metrics"] == metrics
    assert (report["mode"], report["model"], report["task"]) == (
        "inference",
        "test-model",
        "test-task",
    )
    progress = json.loads((output / "progress.json").read_text())
    assert (progress["done"], progress["total"], progress["errors"]) == (10, 10, 0)
    assert progress["eta_seconds"] == 0
    assert "run: exact_match=0.9 contains=0.9 samples=10 errors=0" in stdout


@pytest.mark.parametrize(
    ("interval", "most"),
    [("1000", 2), ("0.000001", 41)],
    ids=["at most one line per interval, plus the last", "every sample when the interval is tiny"],
)
def test_progress_lines_are_throttled(tmp_path, capsys, interval, most):
    answers = questions(40)
    with MockModel(answer_from(answers)) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 40),
            tmp_path / "out",
            EVAL_PROGRESS_INTERVAL_SECONDS=interval,
        )
        assert run.main(environ=env) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if line.startswith("progress")]
    assert 2 <= len(lines) <= most
    assert lines[-1].startswith("progress: 40/40 done, 0 errors")
    assert [line for line in out if line.startswith("EVAL_PROGRESS")][-1] == (
        "EVAL_PROGRESS done=40 total=40"
    )


def test_evaluation_only_scores_the_predictions_in_the_rows_without_any_model(tmp_path):
    output = tmp_path / "out"
    env = environment(None, "builtin:qa-predictions", output, EVAL_SCORER="exact_match,contains")
    result = run_with(env)
    # The set's rows: 12 answers exactly right, 8 right but wordy, 10 wrong.
    assert (result["exact_match"], result["contains"]) == (0.4, 0.666667)
    assert (result["samples"], result["errors"]) == (30, 0)
    assert "latency_mean_seconds" not in result
    assert len(journal(output / "predictions.jsonl")) == 30
    assert json.loads((output / "report.json").read_text())["mode"] == "evaluation"


def test_evaluation_only_with_a_row_missing_its_prediction(tmp_path):
    rows = [
        {"id": "1", "query": "q", "answer": "a", "output": "a"},
        {"id": "2", "query": "q", "answer": "b"},
    ]
    env = environment(
        None,
        write_dataset(tmp_path / "set.jsonl", rows),
        tmp_path / "out",
        EVAL_MODE="evaluation",
        EVAL_PREDICTION_FIELD="output",
    )
    env["EVAL_MAX_ERROR_RATE"] = "1"  # failed samples are scored, not fatal
    result = run_with(env)
    assert (result["exact_match"], result["errors"]) == (0.5, 1)
    [_, missing] = journal(tmp_path / "out" / "reviews.jsonl")
    assert "no 'output' (EVAL_PREDICTION_FIELD)" in missing["error"]


def test_column_names_are_configurable(tmp_path):
    rows = [{"key": f"k{i}", "question": f"q{i}", "gold": [f"a{i}", "other"]} for i in range(3)]
    with MockModel(lambda key, attempt: Reply("a" + key[1:])) as model:
        env = environment(
            model.url,
            write_dataset(tmp_path / "set.jsonl", rows),
            tmp_path / "out",
            EVAL_ID_FIELD="key",
            EVAL_QUERY_FIELD="question",
            EVAL_ANSWER_FIELD="gold",
        )
        assert run_with(env)["exact_match"] == 1.0
    assert [r["id"] for r in journal(tmp_path / "out" / "reviews.jsonl")] == ["k0", "k1", "k2"]


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        (None, {"EVAL_DATASET": "/no/such/set.jsonl"}, "no such file (is its volume mounted?)"),
        (None, {"EVAL_DATASET": "builtin:nope"}, "choose from builtin:arithmetic"),
        ([{"id": 1, "query": "q"}, {"id": 1, "query": "q"}], {}, "id '1' repeats line 1"),
        ([{"query": "q", "solution": "a"}], {}, "no row has the answer column 'answer'"),
        ([{"prompt": "q", "answer": "a"}], {}, "has neither 'query' (EVAL_QUERY_FIELD)"),
        ([], {}, "has no rows"),
        (None, {"EVAL_SCORER": "bleu"}, "unknown scorer bleu"),
    ],
    ids=[
        "a missing file",
        "an unknown builtin set",
        "repeated ids",
        "a wrong answer column",
        "a wrong query column",
        "an empty file",
        "an unknown scorer",
    ],
)
def test_mistakes_fail_at_once_with_a_clear_message(tmp_path, capsys, rows, extra, message):
    dataset = tmp_path / "set.jsonl"
    if rows is not None:
        write_dataset(dataset, rows)
    else:
        qa_dataset(dataset, 2)
    env = environment("http://127.0.0.1:9/v1/chat/completions", dataset, tmp_path / "out")
    env.update(extra)
    assert run.main(environ=env) == 1
    assert message in capsys.readouterr().err


def test_a_stale_result_is_removed_when_a_rerun_fails(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "metrics.json").write_text('{"metrics": [{"name": "exact_match", "value": 1}]}')
    with MockModel(lambda key, attempt: Reply(status=500)) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 3), output)
        assert run.main(environ=env) == 1
    assert not (output / "metrics.json").exists()
    assert json.loads((output / "report.json").read_text())["errors"] == [
        {"error": 'HTTP 500: {"error": {"message": "busy"}}', "samples": 3}
    ]
