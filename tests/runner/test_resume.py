"""Rerunning into the same folder: nothing answered is sent twice, a kill corrupts nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from eval_runner import results, run, store
from localkube.mockmodel import MockModel, Reply, answer_from
from tests.runner.support import environment, journal, qa_dataset, questions, run_with


def test_a_rerun_sends_only_what_is_missing_or_failed(tmp_path):
    answers = questions(20)
    output = tmp_path / "out"
    dataset = qa_dataset(tmp_path / "set.jsonl", 20)
    broken = {"q05", "q06", "q07"}
    outage = True

    def behave(key, attempt):
        if outage and key in broken:
            return Reply(status=503)
        return Reply(answers[key])

    with MockModel(behave) as model:
        env = environment(model.url, dataset, output, EVAL_LIMIT="12")
        env["EVAL_MAX_ERROR_RATE"] = "1"  # failed samples are scored, not fatal
        first = run_with(env)
        assert (first["samples"], first["errors"]) == (12, 3)
        # A kill tore the last line while it was being written.
        predictions = output / "predictions.jsonl"
        lines = predictions.read_bytes().splitlines(keepends=True)
        torn = json.loads(lines[-1])["id"]
        predictions.write_bytes(b"".join(lines[:-1]) + lines[-1][:9])
        outage = False
        del env["EVAL_LIMIT"]
        second = run_with(env)
    assert (second["samples"], second["errors"], second["exact_match"]) == (20, 0, 1.0)
    twice = {key for key, count in model.attempts.items() if count > 1}
    assert twice == broken | {torn}, "only failed samples and the torn line were sent again"
    assert set(model.attempts) == set(answers)
    final = journal(predictions)
    assert [p["id"] for p in final] == list(answers), "compacted: one line per sample, in order"


def test_a_rerun_of_a_finished_run_sends_nothing(tmp_path):
    answers = questions(8)
    output = tmp_path / "out"
    with MockModel(answer_from(answers)) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 8), output)
        first = run_with(env)
        requests = len(model.arrivals)
        second = run_with(env)
    assert len(model.arrivals) == requests == 8
    assert first == second


def test_a_row_whose_question_changed_is_asked_again(tmp_path):
    answers = {**questions(4), "q02 (revised)": "a02"}
    output = tmp_path / "out"
    dataset = qa_dataset(tmp_path / "set.jsonl", 4)
    with MockModel(answer_from(answers)) as model:
        env = environment(model.url, dataset, output)
        run_with(env)
        dataset.write_text(
            dataset.read_text().replace('"query": "q02"', '"query": "q02 (revised)"')
        )
        assert run_with(env)["exact_match"] == 1.0
    assert model.attempts == {"q01": 1, "q02": 1, "q03": 1, "q04": 1, "q02 (revised)": 1}


@pytest.mark.parametrize(
    "change",
    [{"EVAL_TEMPERATURE": "0.7"}, {"EVAL_SYSTEM_PROMPT": "Be brief."}, {"EVAL_RESUME": "false"}],
    ids=[
        "a new temperature starts over",
        "a new system prompt starts over",
        "EVAL_RESUME=false starts over",
    ],
)
def test_answers_from_other_settings_are_not_reused(tmp_path, capsys, change):
    answers = questions(6)
    output = tmp_path / "out"
    with MockModel(answer_from(answers)) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 6), output)
        run_with(env)
        assert run.main(environ={**env, **change}) == 0
    assert all(count == 2 for count in model.attempts.values())
    assert "not resuming the earlier run" in capsys.readouterr().out
    assert len(journal(output / "predictions.jsonl")) == 6


def test_a_kill_at_any_moment_leaves_no_corrupt_file_and_the_rerun_finishes(tmp_path):
    answers = questions(60)
    output = tmp_path / "out"
    with MockModel(lambda key, attempt: Reply(answers[key], delay=0.02)) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 60),
            output,
            EVAL_PROGRESS_INTERVAL_SECONDS="0.01",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "eval_runner", "run"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while len(model.arrivals) < 25 and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        survived = {p["id"] for p in journal(output / "predictions.jsonl")}
        assert 10 <= len(survived) < 60, "killed midway, with answers on disk"
        json.loads((output / "progress.json").read_text())
        assert not (output / "metrics.json").exists()
        result = run_with(env)
    assert (result["samples"], result["errors"], result["exact_match"]) == (60, 0, 1.0)
    assert all(model.attempts[key] == 1 for key in survived), "nothing on disk was sent again"
    assert results.parse((output / "metrics.json").read_text())["exact_match"] == 1.0
    for name in ("predictions.jsonl", "reviews.jsonl"):
        records, intact = store.read_journal(output / name)
        assert len(records) == 60 and intact == (output / name).stat().st_size
    json.loads((output / "report.json").read_text())
    assert sorted(os.listdir(output)) == [
        "metrics.json",
        "predictions.jsonl",
        "progress.json",
        "report.json",
        "resume.json",
        "reviews.jsonl",
    ], "no temporary files are left behind"


def test_temporary_files_a_kill_left_are_removed_on_the_next_run(tmp_path):
    """A kill between write_atomic's temporary file and its rename leaves the former."""
    answers = questions(5)
    output = tmp_path / "out"
    output.mkdir()
    (output / ".progress.json.abc123.tmp").write_text("{")
    (output / ".metrics.json.def456.tmp").write_text("{")
    (output / ".notes.abc.tmp").write_text("")  # not the runner's: left alone
    with MockModel(lambda key, attempt: Reply(answers[key])) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 5), output)
        run_with(env)
    left = sorted(p.name for p in output.iterdir() if p.name.startswith("."))
    assert left == [".notes.abc.tmp"]
