"""Tables for the scorers and the text extraction behind them."""

from __future__ import annotations

import re

import pytest

from eval_runner import extract, judge, scorers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  Paris\n", "paris"),
        ("An apple a day", "apple day"),
        ("U.S.", "us"),
        ("3.5 apples", "3.5 apples"),
        ("1,000 dollars", "1000 dollars"),
        ("\uff30\uff41\uff52\uff49\uff53", "paris"),
        ("snake_case", "snakecase"),
    ],
    ids=[
        "punctuation and case do not matter",
        "surrounding whitespace does not matter",
        "articles are dropped",
        "dots of an abbreviation are dropped",
        "a decimal point between digits is kept",
        "thousands separators are dropped",
        "full-width letters are folded",
        "underscores count as punctuation",
    ],
)
def test_normalize(text, expected):
    assert extract.normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("(c)", "C"),
        (" d. ", "D"),
        ("The answer is (B).", "B"),
        ("Answer: D", "D"),
        ("I think the answer is option C because ...", "C"),
        ("B. Mercury", "B"),
        ("(A) Au is the symbol", "A"),
        ("Gold's symbol comes from aurum (A), not (B)", "B"),
        ("Mercury is closest, so C is wrong and B is right", "B"),
        ("A cat is not an option", None),
        ("I do not know", None),
        ("", None),
    ],
    ids=[
        "a bare letter",
        "a lower-case letter in parentheses",
        "a lower-case letter with a period",
        "answer is, then the letter in parentheses",
        "answer colon letter",
        "answer is option letter inside prose",
        "a leading letter with a period",
        "a leading letter in parentheses",
        "the last parenthesised letter wins",
        "the last lone capital letter as a fallback",
        "the article A is no choice",
        "no letter at all",
        "an empty reply",
    ],
)
def test_choice(text, expected):
    assert extract.choice(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42.0),
        ("She has 3 boxes, so 3 * 4 = 12 apples.", 12.0),
        ("Step 1: 60 / 5 = 12\n#### 12", 12.0),
        ("#### 1,234", 1234.0),
        ("The total is $1,200.", 1200.0),
        ("It dropped to -7 degrees", -7.0),
        ("about 2.75 km", 2.75),
        ("#### 5 apples, not 6", 6.0),
        ("no digits here", None),
        ("#### nothing after the mark", None),
    ],
    ids=[
        "a bare number",
        "the last number of a worked answer",
        "what follows the GSM8K mark",
        "thousands separators after the mark",
        "a currency sign and a trailing period",
        "a negative number",
        "a decimal",
        "after the mark the last number still wins",
        "no number",
        "a mark followed by no number",
    ],
)
def test_number(text, expected):
    assert extract.number(text) == expected


TOLERANT = scorers.numeric(1e-6)
STRICT = scorers.numeric(0.0)
LETTERS = scorers.regex(re.compile(r"ANSWER:\s*(\w+)"))
WHOLE = scorers.regex(re.compile(r"\d+"))


@pytest.mark.parametrize(
    ("scorer", "prediction", "answers", "value"),
    [
        (scorers.exact_match, "Paris.", ["paris"], 1.0),
        (scorers.exact_match, "The Paris", ["Paris"], 1.0),
        (scorers.exact_match, "Paris, France", ["Paris"], 0.0),
        (scorers.exact_match, "Kiev", ["Kyiv", "Kiev"], 1.0),
        (scorers.exact_match, "anything", [], 0.0),
        (scorers.contains, "It is Paris, of course.", ["paris"], 1.0),
        (scorers.contains, "10 apples", ["1"], 0.0),
        (scorers.contains, "New Delhi is big", ["New Delhi"], 1.0),
        (scorers.contains, "whatever", [""], 0.0),
        (LETTERS, "Reasoning... ANSWER: Tokyo", ["tokyo"], 1.0),
        (LETTERS, "Tokyo", ["tokyo"], 0.0),
        (WHOLE, "I count 12 sheep", ["12"], 1.0),
        (scorers.multiple_choice, "The answer is (B)", ["B"], 1.0),
        (scorers.multiple_choice, "C", ["(B)"], 0.0),
        (scorers.multiple_choice, "none of them", ["B"], 0.0),
        (TOLERANT, "so she has 18 left", ["Worked: 20 - 2 = 18\n#### 18"], 1.0),
        (TOLERANT, "0.3333333", ["0.33333333"], 1.0),
        (STRICT, "0.3333333", ["0.33333333"], 0.0),
        (TOLERANT, "#### 1,200", ["1200"], 1.0),
        (TOLERANT, "17", ["#### 18"], 0.0),
        (TOLERANT, "no idea", ["18"], 0.0),
    ],
    ids=[
        "exact match ignores case and punctuation",
        "exact match ignores articles",
        "exact match wants nothing more",
        "exact match accepts any of several answers",
        "exact match without a reference scores 0",
        "contains finds the answer in prose",
        "contains matches whole words only",
        "contains matches a several-word answer",
        "contains never matches an empty answer",
        "regex compares its first group",
        "regex without a match scores 0",
        "regex without groups compares the whole match",
        "multiple choice extracts the letter",
        "multiple choice compares with the reference's letter",
        "multiple choice without a letter scores 0",
        "numeric reads a GSM8K reference",
        "numeric accepts a difference within tolerance",
        "numeric with zero tolerance wants equality",
        "numeric ignores thousands separators",
        "numeric rejects a different number",
        "numeric without a number scores 0",
    ],
)
def test_scorers(scorer, prediction, answers, value):
    score = scorer(prediction, answers)
    assert score.value == value
    assert score.reason


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("1", 1.0),
        ("0", 0.0),
        ("0.75", 0.75),
        ("Score: 0.5", 0.5),
        ("The answer is partly right. score = 0.25", 0.25),
        ("7/10", 0.7),
        ("Score: 4 / 5", 0.8),
        ("Yes", 1.0),
        ("no, the capital is Paris", 0.0),
        ("Incorrect.", 0.0),
        ("correct", 1.0),
        ("TRUE", 1.0),
    ],
    ids=[
        "a bare one",
        "a bare zero",
        "a fraction of one",
        "a labelled score",
        "a labelled score after prose",
        "a score out of ten",
        "a labelled score out of five",
        "yes",
        "no with an explanation",
        "incorrect is not correct",
        "correct",
        "true in capitals",
    ],
)
def test_judge_reply(reply, expected):
    assert judge.parse(reply) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("I cannot grade this", "no score"),
        ("Score: 7", "outside 0..1"),
        ("3/0", "divides by zero"),
    ],
    ids=["no score at all", "a score above one", "a zero denominator"],
)
def test_judge_reply_without_a_score(reply, message):
    with pytest.raises(ValueError, match=message):
        judge.parse(reply)
