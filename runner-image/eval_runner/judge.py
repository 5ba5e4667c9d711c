"""The LLM judge: another model grades each prediction against the reference answer.

The prompt is EVAL_JUDGE_PROMPT with {question}, {answer} and {prediction} filled in by
plain replacement (not str.format), so braces elsewhere in a prompt, or in the texts, are
harmless. The reply is read as a score in 0..1: "Score: 0.8", "1", "7/10", or a verdict
word (yes/no, correct/incorrect, true/false). Anything else is an error for that sample,
not a silent 0: a judge that does not follow its prompt should be visible.
"""

from __future__ import annotations

import re
from typing import Final

from eval_runner import prompts
from eval_runner.client import ModelClient
from eval_runner.errors import SampleError
from eval_runner.samples import Sample
from eval_runner.scorers import Score

_SCORE: Final = re.compile(r"\bscore\b\W{0,3}(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?", re.I)
_NUMBER: Final = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?")
_VERDICT: Final = re.compile(r"^\W*(yes|no|correct|incorrect|true|false|right|wrong)\b", re.I)
_POSITIVE: Final = frozenset({"yes", "correct", "true", "right"})
_SHOWN: Final = 80


def render(template: str, sample: Sample, prediction: str) -> str:
    return (
        template.replace("{question}", sample.question)
        .replace("{answer}", " / ".join(sample.answers))
        .replace("{prediction}", prediction)
    )


def parse(reply: str) -> float:
    """The judge's score in 0..1; ValueError when the reply holds none.

    In order of trust: "score: X", a leading verdict word, the first number.
    """
    match = _SCORE.search(reply)
    if match:
        return _value(match)
    verdict = _VERDICT.match(reply)
    if verdict:
        return 1.0 if verdict.group(1).lower() in _POSITIVE else 0.0
    match = _NUMBER.search(reply)
    if match:
        return _value(match)
    raise ValueError(f"no score in the judge's reply {_short(reply)}")


def _value(match: re.Match[str]) -> float:
    value = float(match.group(1))
    if match.group(2):
        denominator = float(match.group(2))
        if denominator <= 0:
            raise ValueError(f"the judge's score {match.group(0)!r} divides by zero")
        value /= denominator
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the judge's score {match.group(0)!r} is outside 0..1")
    return value


async def grade(client: ModelClient, template: str, sample: Sample, prediction: str) -> Score:
    """Ask the judge; SampleError when it fails or its reply holds no score."""
    body = prompts.judge_body(render(template, sample, prediction), client.endpoint)
    completion = await client.complete(body)
    try:
        value = parse(completion.text)
    except ValueError as e:
        raise SampleError(str(e), completion.attempts) from None
    return Score(value, f"judge: {_short(completion.text)}")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")
