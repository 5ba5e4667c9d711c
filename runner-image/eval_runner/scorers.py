"""The scorers that need no model: a prediction and its reference answers in, a Score out.

Each returns a value in 0..1 and a short reason, which goes into reviews.jsonl so that a
surprising score can be traced to the samples behind it. A sample may carry several
acceptable answers; it scores 1 if any of them matches. The LLM judge, which does need a
model, lives in judge.py and returns the same Score.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from eval_runner import extract

_SHOWN: Final = 60  # characters of a text quoted in a reason


@dataclass(frozen=True)
class Score:
    value: float
    reason: str


Scorer = Callable[[str, Sequence[str]], Score]
T = TypeVar("T")


def exact_match(prediction: str, answers: Sequence[str]) -> Score:
    got = extract.normalize(prediction)
    for answer in answers:
        if got == extract.normalize(answer):
            return Score(1.0, f"matches {_quote(answer)}")
    return _miss(f"{_quote(prediction)} is not", answers)


def contains(prediction: str, answers: Sequence[str]) -> Score:
    """The normalised answer appears in the prediction as whole words ("1" is not in "10")."""
    got = f" {extract.normalize(prediction)} "
    for answer in answers:
        want = extract.normalize(answer)
        if want and f" {want} " in got:
            return Score(1.0, f"contains {_quote(answer)}")
    return _miss("does not contain", answers)


def regex(pattern: re.Pattern[str]) -> Scorer:
    """Extract with the pattern (its first group, or the whole match), then exact match."""

    def score(prediction: str, answers: Sequence[str]) -> Score:
        match = pattern.search(prediction)
        if match is None:
            return Score(0.0, f"no match for /{pattern.pattern}/")
        extracted = match.group(1) if pattern.groups else match.group(0)
        result = exact_match(extracted or "", answers)
        return Score(result.value, f"extracted {_quote(extracted or '')}: {result.reason}")

    return score


@dataclass(frozen=True)
class _Extracting(Generic[T]):
    """Compares one kind of value (an option letter, a number) pulled out of the
    prediction and out of each answer; the reasons name both."""

    kind: str  # what a reason calls the value
    pull: Callable[[str], T | None]
    same: Callable[[T, T], bool]
    show: Callable[[T], str]
    hit: str  # the reason of a match, with {got} and {want}
    miss: str  # the reason of none, with {got} and {wanted}

    def __call__(self, prediction: str, answers: Sequence[str]) -> Score:
        got = self.pull(prediction)
        if got is None:
            return Score(0.0, f"no {self.kind} in {_quote(prediction)}")
        wanted = [self.pull(a) for a in answers]
        for want in wanted:
            if want is not None and self.same(got, want):
                return Score(1.0, self.hit.format(got=self.show(got), want=self.show(want)))
        shown = " or ".join("?" if w is None else self.show(w) for w in wanted)
        return Score(0.0, self.miss.format(got=self.show(got), wanted=shown))


multiple_choice: Final[Scorer] = _Extracting(
    "option letter",
    extract.choice,
    str.__eq__,
    str,
    "chose {got}",
    "chose {got}, expected {wanted}",
)


def numeric(tolerance: float) -> Scorer:
    """GSM8K style: the last number (or the one after "####") on both sides, within tolerance.

    The tolerance is relative and absolute at once (math.isclose), so 1e-6 accepts
    "0.3333333" for 1/3 and "1000000.0000001" for 1e6.
    """
    return _Extracting(
        "number",
        extract.number,
        lambda got, want: math.isclose(got, want, rel_tol=tolerance, abs_tol=tolerance),
        "{:g}".format,
        "{got} equals {want}",
        "{got} is not {wanted}",
    )


def build(name: str, pattern: re.Pattern[str] | None, tolerance: float) -> Scorer:
    """The scorer named in EVAL_SCORER (config.py has already checked the name)."""
    if name == "regex":
        assert pattern is not None
        return regex(pattern)
    if name == "numeric":
        return numeric(tolerance)
    simple: dict[str, Scorer] = {
        "exact_match": exact_match,
        "contains": contains,
        "multiple_choice": multiple_choice,
    }
    return simple[name]


def _miss(verb: str, answers: Sequence[str]) -> Score:
    if not answers:
        return Score(0.0, "no reference answer")
    return Score(0.0, f"{verb} {' or '.join(_quote(a) for a in answers)}")


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")
