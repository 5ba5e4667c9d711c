"""Retries against a service that fails on purpose: what is retried, when, and what is not.

Gaps between attempts are measured where they land, at the server, and compared with the
schedule that the seeded jitter implies. The slack allows for the request's own time on a
busy machine; the lower bound has none to speak of, because waiting less than the schedule
is the bug these tests exist to catch.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from email.utils import formatdate

import pytest

from eval_runner import backoff, run
from localkube.mockmodel import MockModel, Reply
from tests.runner.support import environment, journal, qa_dataset, questions, run_with

# Each test twice: requests from the runner's own process, then from its second one.
pytestmark = pytest.mark.usefixtures("http_process")
SLACK = 0.15
SEED = 3


def gaps(times):
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize(
    "failure",
    [
        Reply(status=500),
        Reply(status=503),
        Reply(status=429),
        Reply(drop=True),
    ],
    ids=[
        "a 500 is retried",
        "a 503 is retried",
        "a 429 without Retry-After is retried",
        "a dropped connection is retried",
    ],
)
def test_transient_failures_are_retried_with_full_jitter_backoff(tmp_path, failure):
    def behave(key, attempt):
        return failure if attempt <= 3 else Reply("a01")

    base = 0.08
    with MockModel(behave) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 1),
            tmp_path / "out",
            MAX_RETRY_PER_QUERY="3",
            EVAL_RETRY_BACKOFF_SECONDS=str(base),
        )
        result = run_with(env, seed=SEED)
    assert result["exact_match"] == 1.0 and result["errors"] == 0
    rng = random.Random(SEED)
    expected = [backoff.full_jitter(k, base, 60, rng) for k in range(3)]
    measured = gaps(model.times("q01"))
    assert len(measured) == 3
    for k, (got, want) in enumerate(zip(measured, expected, strict=True)):
        assert want - 0.005 <= got <= want + SLACK, f"gap {k}: {got:.3f}s, schedule {want:.3f}s"
    [prediction] = journal(tmp_path / "out" / "predictions.jsonl")
    assert prediction["attempts"] == 4


def test_the_backoff_is_capped(tmp_path):
    def behave(key, attempt):
        return Reply(status=500) if attempt <= 4 else Reply("a01")

    with MockModel(behave) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 1),
            tmp_path / "out",
            MAX_RETRY_PER_QUERY="4",
            EVAL_RETRY_BACKOFF_SECONDS="0.05",
            EVAL_RETRY_BACKOFF_MAX_SECONDS="0.06",
        )
        assert run_with(env, seed=SEED)["exact_match"] == 1.0
    measured = gaps(model.times("q01"))
    assert len(measured) == 4, "four retries, each after a capped backoff"
    assert all(gap <= 0.06 + SLACK for gap in measured)


@pytest.mark.parametrize(
    "retry_after",
    [lambda: "0.4", lambda: formatdate(time.time() + 1.5, usegmt=True)],
    ids=["in seconds", "as an HTTP date"],
)
def test_retry_after_is_honoured(tmp_path, retry_after):
    sent: list[tuple[float, str]] = []

    def behave(key, attempt):
        if attempt == 1:
            header = retry_after()
            sent.append((time.time(), header))
            return Reply(status=429, headers={"Retry-After": header})
        return Reply("a01")

    with MockModel(behave) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 1),
            tmp_path / "out",
            MAX_RETRY_PER_QUERY="1",
            EVAL_RETRY_BACKOFF_SECONDS="0.001",  # jitter alone would retry at once
        )
        assert run_with(env)["exact_match"] == 1.0
    [(at, header)] = sent
    wanted = backoff.retry_after(header, at)
    assert wanted is not None and wanted >= 0.4
    [gap] = gaps(model.times("q01"))
    assert wanted - 0.05 <= gap <= wanted + SLACK


def test_a_slow_answer_times_out_and_is_retried(tmp_path):
    def behave(key, attempt):
        return Reply("a01", delay=2.0 if attempt == 1 else 0.0)

    with MockModel(behave) as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 1),
            tmp_path / "out",
            EVAL_REQUEST_TIMEOUT="0.3",
            MAX_RETRY_PER_QUERY="1",
        )
        started = time.monotonic()
        result = run_with(env)
        elapsed = time.monotonic() - started
    assert result["exact_match"] == 1.0
    [gap] = gaps(model.times("q01"))
    assert 0.3 <= gap <= 0.3 + SLACK
    assert elapsed < 1.5, "the run did not wait for the slow answer"


def test_a_sample_that_keeps_failing_is_an_error_and_the_others_go_on(tmp_path):
    answers = questions(10)

    def behave(key, attempt):
        return Reply(status=500) if key == "q03" else Reply(answers[key])

    output = tmp_path / "out"
    with MockModel(behave) as model:
        env = environment(
            model.url, qa_dataset(tmp_path / "set.jsonl", 10), output, MAX_RETRY_PER_QUERY="2"
        )
        env["EVAL_MAX_ERROR_RATE"] = "1"  # failed samples are scored, not fatal
        result = run_with(env)
    assert model.attempts["q03"] == 3
    assert (result["errors"], result["samples"], result["exact_match"]) == (1, 10, 0.9)
    reviews = {r["id"]: r for r in journal(output / "reviews.jsonl")}
    assert reviews["q03"]["error"].startswith("HTTP 500")
    assert "after 3 attempts" in reviews["q03"]["error"]
    assert reviews["q03"]["scores"] == {"exact_match": 0.0}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(raw=b"<html>upstream error</html>"), "the reply is not JSON: <html>"),
        (Reply(raw=b'{"choices": []}'), "the reply has no choices[0].message.content"),
        (Reply(status=400), "HTTP 400"),
        (Reply(status=404), "HTTP 404"),
        (
            Reply(raw=b"plain", headers={"Content-Encoding": "gzip"}),
            "the reply's body cannot be decoded",
        ),
    ],
    ids=[
        "garbage instead of JSON",
        "JSON without a choice",
        "a bad request",
        "a wrong path",
        "a body that is not the gzip it claims to be",
    ],
)
def test_answers_that_no_retry_can_fix_are_errors_at_once(tmp_path, reply, message):
    answers = questions(5)

    def behave(key, attempt):
        return reply if key == "q02" else Reply(answers[key])

    output = tmp_path / "out"
    with MockModel(behave) as model:
        env = environment(
            model.url, qa_dataset(tmp_path / "set.jsonl", 5), output, MAX_RETRY_PER_QUERY="3"
        )
        env["EVAL_MAX_ERROR_RATE"] = "1"  # failed samples are scored, not fatal
        result = run_with(env)
    assert model.attempts["q02"] == 1
    assert (result["errors"], result["exact_match"]) == (1, 0.8)
    reviews = {r["id"]: r for r in journal(output / "reviews.jsonl")}
    assert message in reviews["q02"]["error"]


def failing_sweep(tmp_path, failing: int, total: int, **extra: str):
    """A run where the first `failing` of `total` samples get HTTP 500 every time."""
    answers = questions(total)
    bad = {f"q{i:02d}" for i in range(1, failing + 1)}

    def behave(key, attempt):
        return Reply(status=500) if key in bad else Reply(answers[key])

    output = tmp_path / "out"
    with MockModel(behave) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", total), output, **extra)
        return run.main(environ=env), output


def test_more_failed_samples_than_the_default_error_rate_fail_the_run(tmp_path, capsys):
    code, output = failing_sweep(tmp_path, 2, 20)  # 10 % against the default 5 %
    assert code == 1
    err = capsys.readouterr().err
    assert "2 of 20 samples failed after their retries (10.0%" in err
    assert "EVAL_MAX_ERROR_RATE=0.05" in err
    assert "2 x HTTP 500" in err, "what went wrong, and how often"
    assert not (output / "metrics.json").exists(), "no score to take for a result"
    report = json.loads((output / "report.json").read_text())
    assert (report["metrics"]["errors"], report["metrics"]["error_rate"]) == (2, 0.1)


def test_failed_samples_within_the_error_rate_are_scored_and_counted(tmp_path):
    code, output = failing_sweep(tmp_path, 1, 20)  # 5 %: at the limit, not over it
    assert code == 0
    metrics = {
        m["name"]: m["value"] for m in json.loads((output / "metrics.json").read_text())["metrics"]
    }
    assert (metrics["exact_match"], metrics["errors"], metrics["error_rate"]) == (0.95, 1, 0.05)


def test_a_raised_error_rate_lets_a_run_with_more_failures_succeed(tmp_path):
    code, _ = failing_sweep(tmp_path, 2, 20, EVAL_MAX_ERROR_RATE="0.1")
    assert code == 0


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1.5", "must be a fraction from 0 to 1"),
        ("-0.1", "must be a finite number >= 0"),
        ("x", "is not a number"),
    ],
)
def test_a_bad_error_rate_is_named(tmp_path, capsys, value, words):
    code, _ = failing_sweep(tmp_path, 0, 2, EVAL_MAX_ERROR_RATE=value)
    assert code == 1
    err = capsys.readouterr().err
    assert "EVAL_MAX_ERROR_RATE" in err and words in err
