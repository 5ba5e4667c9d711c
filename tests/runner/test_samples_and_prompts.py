"""Tables for reading rows into samples, and samples into request bodies."""

from __future__ import annotations

import json
import re

import pytest

from eval_runner import prompts, samples
from eval_runner.config import Config, Endpoint, Fields, Generation
from eval_runner.errors import DatasetError

FIELDS = Fields()


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"id": "x", "query": "q", "answer": "a"}, samples.Sample("x", "q", None, ("a",))),
        ({"query": "q", "answer": ["a", "b"]}, samples.Sample("7", "q", None, ("a", "b"))),
        ({"id": 3, "query": "q", "answer": 42}, samples.Sample("3", "q", None, ("42",))),
        (
            {"messages": [{"role": "user", "content": "hi"}], "answer": "a", "prediction": "p"},
            samples.Sample("7", None, ({"role": "user", "content": "hi"},), ("a",), "p"),
        ),
        ({"query": "q"}, samples.Sample("7", "q", None, ())),
    ],
    ids=[
        "a query row",
        "several acceptable answers, and the line number as the id",
        "numbers become text",
        "a chat row carrying a prediction",
        "a row without an answer",
    ],
)
def test_rows_become_samples(row, expected):
    assert samples.to_sample(7, row, FIELDS) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"query": "q"}\nnot json\n', "line 2 is not valid JSON"),
        ('["q", "a"]\n', "line 1 is not a JSON object"),
        ('{"messages": "hi"}\n', "messages must be a non-empty list"),
        ('{"messages": [{"role": "user"}]}\n', "messages[0] must be an object with string role"),
    ],
    ids=["a line that is not JSON", "a line that is no object", "messages as text", "no content"],
)
def test_malformed_rows_name_their_line(tmp_path, text, message):
    path = tmp_path / "set.jsonl"
    path.write_text(text)
    with pytest.raises(DatasetError, match=re.escape(message)):
        samples.load(str(path), FIELDS)


def test_blank_lines_are_skipped_and_the_limit_takes_the_first_rows(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text('{"query": "a"}\n\n{"query": "b"}\n{"query": "c"}\n')
    assert [s.query for s in samples.load(str(path), FIELDS, limit=2)] == ["a", "b"]
    assert [s.id for s in samples.load(str(path), FIELDS)] == ["1", "3", "4"]


@pytest.mark.parametrize("name", samples.builtin_names())
def test_every_builtin_set_loads_with_unique_ids_and_answers(name):
    rows = samples.load(f"builtin:{name}", FIELDS)
    assert 25 <= len(rows) <= 60
    assert all(s.answers and s.query for s in rows)
    assert len({s.query for s in rows}) == len(rows), "mock models answer by the query"
    samples.check(rows, FIELDS, inference=True, needs_answer=True)


def test_the_builtin_sets_are_the_documented_ones():
    assert samples.builtin_names() == [
        "arithmetic",
        "capitals",
        "multiple-choice",
        "qa-predictions",
        "word-problems",
    ]


CHAT = Endpoint("http://m/v1/chat/completions", "chat", model="served")
LEGACY = Endpoint("http://m/v1/completions", "completions")
QUERY = samples.Sample("1", query="What is 2 + 2?")
CONVERSATION = samples.Sample(
    "2",
    messages=(
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2 + 2?"},
    ),
)


def config(**kwargs):
    return Config(output_dir=None, dataset="x", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sample", "endpoint", "settings", "expected"),
    [
        (
            QUERY,
            CHAT,
            {},
            {"model": "served", "messages": [{"role": "user", "content": "What is 2 + 2?"}]},
        ),
        (
            QUERY,
            CHAT,
            {"prompt_template": "Answer briefly.\n{query}", "system_prompt": "Be exact."},
            {
                "model": "served",
                "messages": [
                    {"role": "system", "content": "Be exact."},
                    {"role": "user", "content": "Answer briefly.\nWhat is 2 + 2?"},
                ],
            },
        ),
        (
            QUERY,
            LEGACY,
            {"generation": Generation(max_tokens=5, stop=("\n",))},
            {"prompt": "What is 2 + 2?", "max_tokens": 5, "stop": ["\n"]},
        ),
        (
            CONVERSATION,
            LEGACY,
            {},
            {"prompt": "user: Hi\nassistant: Hello\nuser: 2 + 2?\nassistant:"},
        ),
        (
            QUERY,
            LEGACY,
            {"prompt_template": "Q: {query} {not a placeholder}\nA:"},
            {"prompt": "Q: What is 2 + 2? {not a placeholder}\nA:"},
        ),
    ],
    ids=[
        "a query becomes one user message",
        "the template wraps the query and the system prompt comes first",
        "the legacy API takes the query as the prompt, with parameters",
        "the legacy API renders a conversation as lines",
        "braces in a template other than {query} are left alone",
    ],
)
def test_request_bodies(sample, endpoint, settings, expected):
    body = prompts.request_body(sample, config(**settings), endpoint)
    assert body == expected
    json.dumps(body)
