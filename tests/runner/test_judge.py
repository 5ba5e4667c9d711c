"""The LLM judge: its own service, concurrency and retries; its replies read as scores."""

from __future__ import annotations

import re

from localkube.mockmodel import MockModel, Reply, answer_from
from tests.runner.support import environment, journal, qa_dataset, questions, run_with

GRADED = re.compile(r"Reference answer: (.*)\nAnswer to grade: (.*)\n")


def fair_judge(delay: float = 0.0, fail_first: bool = False):
    """Grades with the default prompt: "1" when the answer equals the reference, else "no"."""

    def behave(prompt, attempt):
        if fail_first and attempt == 1:
            return Reply(status=502)
        reference, graded = GRADED.search(prompt).groups()
        return Reply("Score: 1" if graded == reference else "no", delay=delay)

    return behave


def judged_env(model_url, judge_url, tmp_path, count, **extra):
    return environment(
        model_url,
        qa_dataset(tmp_path / "set.jsonl", count),
        tmp_path / "out",
        EVAL_SCORER="exact_match,llm_judge",
        EVAL_JUDGE_URL=judge_url,
        EVAL_JUDGE_AUTHORIZATION_HEADER_VALUE="Bearer judge",
        EVAL_JUDGE_MODEL="grader",
        **extra,
    )


def test_the_judge_grades_every_prediction_with_its_own_concurrency(tmp_path):
    answers = questions(12)
    answers["q02"] = answers["q09"] = "wrong"
    with (
        MockModel(answer_from(answers)) as model,
        MockModel(fair_judge(delay=0.03), token="Bearer judge") as judge,
    ):
        env = judged_env(model.url, judge.url, tmp_path, 12, EVAL_JUDGE_CONCURRENCY="2")
        result = run_with(env)
    assert result["llm_judge"] == result["exact_match"] == round(10 / 12, 6)
    assert judge.max_in_flight == 2 and judge.unauthorized == 0
    assert len(judge.arrivals) == 12
    assert all(a.body["model"] == "grader" and a.body["temperature"] == 0 for a in judge.arrivals)
    [prompt] = [a.key for a in judge.arrivals if "Question: q01\n" in a.key]
    assert "Reference answer: a01\nAnswer to grade: a01\n" in prompt
    reviews = {r["id"]: r for r in journal(tmp_path / "out" / "reviews.jsonl")}
    assert reviews["q02"]["reasons"]["llm_judge"] == "judge: 'no'"


def test_the_judge_is_retried_and_a_reply_without_a_score_is_an_error(tmp_path):
    answers = questions(4)

    def judge_behaviour(prompt, attempt):
        if "Answer to grade: a03" in prompt:
            return Reply("I would rather not say")
        return fair_judge(fail_first=True)(prompt, attempt)

    with (
        MockModel(answer_from(answers)) as model,
        MockModel(judge_behaviour, token="Bearer judge") as judge,
    ):
        env = judged_env(model.url, judge.url, tmp_path, 4, EVAL_JUDGE_RETRIES="1")
        env["EVAL_MAX_ERROR_RATE"] = "1"  # failed samples are scored, not fatal
        result = run_with(env)
    assert (result["llm_judge"], result["exact_match"], result["errors"]) == (0.75, 1.0, 1)
    reviews = {r["id"]: r for r in journal(tmp_path / "out" / "reviews.jsonl")}
    assert reviews["q03"]["error"].startswith("judge: no score in the judge's reply")
    assert reviews["q01"]["scores"]["llm_judge"] == 1.0


def test_a_rerun_does_not_ask_the_judge_again(tmp_path):
    answers = questions(5)
    with (
        MockModel(answer_from(answers)) as model,
        MockModel(fair_judge(), token="Bearer judge") as judge,
    ):
        env = judged_env(model.url, judge.url, tmp_path, 5)
        first = run_with(env)
        second = run_with(env)
    assert first == second
    assert len(model.arrivals) == len(judge.arrivals) == 5


def test_a_custom_judge_prompt_is_filled_in_literally(tmp_path):
    answers = questions(2)
    with (
        MockModel(answer_from(answers)) as model,
        MockModel(lambda prompt, attempt: Reply("0.5"), token="Bearer judge") as judge,
    ):
        env = judged_env(
            model.url,
            judge.url,
            tmp_path,
            2,
            EVAL_JUDGE_PROMPT='{"q": "{question}", "ref": "{answer}", "got": "{prediction}"}',
        )
        assert run_with(env)["llm_judge"] == 0.5
    assert sorted(a.key for a in judge.arrivals) == [
        '{"q": "q01", "ref": "a01", "got": "a01"}',
        '{"q": "q02", "ref": "a02", "got": "a02"}',
    ]
