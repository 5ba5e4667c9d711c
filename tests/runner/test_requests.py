"""What the runner sends: concurrency, request bodies, the two APIs, the auth header."""

from __future__ import annotations

import json

import pytest

from eval_runner import run
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

# Each test twice: requests from the runner's own process, then from its second one.
pytestmark = pytest.mark.usefixtures("http_process")


@pytest.mark.parametrize("limit", [1, 4, 9], ids=["one at a time", "four", "nine"])
def test_requests_in_flight_never_exceed_max_concurrency(tmp_path, limit):
    answers = questions(30)

    def slow(key, attempt):
        return Reply(answers[key], delay=0.03)

    with MockModel(slow) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 30), tmp_path / "out")
        env["MAX_CONCURRENCY"] = str(limit)
        result = run_with(env)
    assert model.max_in_flight == limit, "the limit is reached, and never exceeded"
    assert len(model.arrivals) == 30
    assert result["exact_match"] == 1.0


def test_connections_are_pooled_and_reused(tmp_path):
    answers = questions(40)
    with MockModel(answer_from(answers)) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 40), tmp_path / "out")
        run_with(env)
    ports = {a.client_port for a in model.arrivals}
    assert len(ports) <= 4, "at most MAX_CONCURRENCY connections, each kept alive"


def test_the_chat_body_carries_the_messages_the_model_and_the_parameters(tmp_path):
    rows = [
        {"id": "plain", "query": "q1", "answer": "a"},
        {
            "id": "chat",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "q2"},
            ],
            "answer": "a",
        },
    ]
    with MockModel(lambda key, attempt: Reply("a")) as model:
        env = environment(
            model.url,
            write_dataset(tmp_path / "set.jsonl", rows),
            tmp_path / "out",
            EVAL_SERVED_MODEL_NAME="org/served-7b",
            EVAL_SYSTEM_PROMPT="You answer tersely.",
            EVAL_TEMPERATURE="0",
            max_tokens="32",
            top_p="0.95",
            EVAL_TOP_K="20",
            repetition_penalty="1.05",
            EVAL_STOP='["\\n\\n"]',
            seed="11",
            EVAL_EXTRA_BODY='{"chat_template_kwargs": {"enable_thinking": false}}',
        )
        run_with(env)
    bodies = {a.key: a.body for a in model.arrivals}
    parameters = {
        "model": "org/served-7b",
        "temperature": 0.0,
        "max_tokens": 32,
        "top_p": 0.95,
        "top_k": 20,
        "repetition_penalty": 1.05,
        "stop": ["\n\n"],
        "seed": 11,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    assert bodies["q1"] == {
        **parameters,
        "messages": [
            {"role": "system", "content": "You answer tersely."},
            {"role": "user", "content": "q1"},
        ],
    }
    assert bodies["q2"]["messages"] == rows[1]["messages"], "a row's own system message stays"


def test_the_legacy_completions_api_is_chosen_by_the_url(tmp_path):
    answers = questions(5)
    with MockModel(answer_from(answers)) as model:
        url = model.url.replace("/chat/completions", "/completions")
        env = environment(
            url,
            qa_dataset(tmp_path / "set.jsonl", 5),
            tmp_path / "out",
            EVAL_PROMPT_TEMPLATE="{query}",
        )
        result = run_with(env)
    assert result["exact_match"] == 1.0
    assert all("prompt" in a.body and "messages" not in a.body for a in model.arrivals)


def test_the_auth_header_is_sent_under_its_configured_name(tmp_path):
    answers = questions(3)
    with MockModel(answer_from(answers), token="Bearer sk-123") as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 3),
            tmp_path / "out",
            EVAL_AUTHORIZATION_HEADER_KEY="Authorization",
            EVAL_AUTHORIZATION_HEADER_VALUE="Bearer sk-123",
        )
        assert run_with(env)["exact_match"] == 1.0
    assert model.unauthorized == 0


def test_a_wrong_auth_header_fails_the_run_clearly_without_leaking_it(tmp_path, capsys):
    answers = questions(6)
    output = tmp_path / "out"
    with MockModel(answer_from(answers), token="Bearer right") as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 6),
            output,
            EVAL_AUTHORIZATION_HEADER_VALUE="Bearer wrong-secret",
            MAX_RETRY_PER_QUERY="3",
        )
        code = run.main(environ=env)
    err = capsys.readouterr().err
    assert code == 1
    assert "all 6 samples failed" in err
    assert "HTTP 401" in err and "EVAL_AUTHORIZATION_HEADER_VALUE" in err
    assert model.unauthorized == 6, "a 401 is final: no retries"
    assert not (output / "metrics.json").exists()
    for path in output.iterdir():
        assert "wrong-secret" not in path.read_text(), path.name
    assert "wrong-secret" not in err


def test_token_totals_come_from_usage_and_are_absent_without_it(tmp_path):
    answers = questions(5)
    with MockModel(answer_from(answers)) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 5), tmp_path / "a")
        with_usage = run_with(env)
    with MockModel(lambda key, attempt: Reply(answers[key], usage=False)) as model:
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 5), tmp_path / "b")
        without = run_with(env)
    assert (with_usage["prompt_tokens"], with_usage["completion_tokens"]) == (50, 5), (
        "10 and 1 per request, as the service counts them"
    )
    assert "prompt_tokens" not in without and "completion_tokens" not in without


def test_latency_is_measured_per_successful_request(tmp_path):
    answers = questions(8)
    with MockModel(lambda key, attempt: Reply(answers[key], delay=0.05)) as model:
        output = tmp_path / "out"
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 8), output)
        run_with(env)
    metrics = metrics_file(output)
    assert 0.05 <= metrics["latency_mean_seconds"] < 0.5
    assert metrics["latency_mean_seconds"] <= metrics["latency_p95_seconds"] < 0.5
    assert all(0.05 <= p["latency"] < 0.5 for p in journal(output / "predictions.jsonl"))


def test_a_reply_without_content_is_an_empty_answer(tmp_path):
    raw = json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]})
    with MockModel(lambda key, attempt: Reply(raw=raw.encode())) as model:
        output = tmp_path / "out"
        env = environment(model.url, qa_dataset(tmp_path / "set.jsonl", 2), output)
        result = run_with(env)
    assert (result["exact_match"], result["errors"]) == (0.0, 0)
