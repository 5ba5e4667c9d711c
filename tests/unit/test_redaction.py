"""What redaction replaces: every secret value, its token without 'Bearer ', short values
standing alone, a piece of one cut off at either end of a text; and values rotated away."""

from __future__ import annotations

import pytest

from eval_operator import redaction

R = redaction.REDACTED
CASES = [
    pytest.param("key=sk-abcdef and more", ["sk-abcdef"], f"key={R} and more", id="a value"),
    pytest.param(
        "Authorization: Bearer sk-abcdef",
        ["Bearer sk-abcdef"],
        f"Authorization: {R}",
        id="a header value, whole",
    ),
    pytest.param(
        "curl -H 'x: sk-abcdef'", ["Bearer sk-abcdef"], f"curl -H 'x: {R}'", id="its token alone"
    ),
    pytest.param("pw=abc ok", ["abc"], f"pw={R} ok", id="a short value standing alone"),
    pytest.param("abcdef: couldn't", ["t", "abc"], "abcdef: couldn't", id="never inside a word"),
    pytest.param(
        {"runs": [{"message": "x sk-abcdef"}], "n": 1},
        ["sk-abcdef"],
        {"runs": [{"message": f"x {R}"}], "n": 1},
        id="every string of a status",
    ),
    pytest.param("nothing here", [], "nothing here", id="no secrets: unchanged"),
]


@pytest.mark.parametrize(("text", "secrets", "expected"), CASES)
def test_redact(text, secrets, expected):
    assert redaction.redact(text, secrets) == expected


CUT = [
    pytest.param("def123 is the end", f"{R} is the end", id="its end, where the log was cut"),
    pytest.param("the log ends sk-abc", f"the log ends {R}", id="its start, at the end"),
    pytest.param("the log ends sk-", "the log ends sk-", id="3 characters left: kept"),
]


@pytest.mark.parametrize(("text", "expected"), CUT)
def test_a_piece_of_a_secret_at_a_cut_texts_ends_is_redacted(text, expected):
    assert redaction.redact(text, ["sk-abcdef123"], cut=True) == expected
    assert redaction.redact(text, ["sk-abcdef123"]) == text, "only texts said to be cut"


def test_every_current_value_is_returned_however_many():
    memory = redaction.Memory()
    many = [f"key-value-{i}" for i in range(redaction.MAX_REMEMBERED + 20)]
    assert set(memory.remember("uid", many)) == set(many)


def test_a_rotated_value_is_still_redacted_in_this_process():
    memory = redaction.Memory()
    memory.remember("uid-1", ["sk-old-value"])
    known = memory.remember("uid-1", ["sk-new-value"])  # after the rotation
    assert redaction.redact("old sk-old-value new sk-new-value", known) == f"old {R} new {R}"
    assert memory.remember("uid-2", []) == [], "another EvalTask's values are its own"
    memory.forget("uid-1")
    assert memory.remember("uid-1", []) == []


def test_memory_keeps_the_newest_values_only():
    memory = redaction.Memory()
    for i in range(redaction.MAX_REMEMBERED + 10):
        known = memory.remember("uid", [f"value-{i}"])
    assert len(known) == redaction.MAX_REMEMBERED
    assert known[-1] == f"value-{redaction.MAX_REMEMBERED + 9}" and "value-0" not in known
