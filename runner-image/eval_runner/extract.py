"""Pull the comparable part out of free text: normalised words, a choice letter, a number.

Models wrap answers in prose ("The answer is (B).", "... so she has $1,200 left. #### 1200"),
so each scorer first reduces both sides to what it compares. Kept apart from the scorers
because these heuristics are where the judgement calls live, and each has its own table of
tests.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_ARTICLES: Final = re.compile(r"\b(a|an|the)\b")
# Punctuation, except a decimal point between digits ("3.5" stays a number).
_PUNCTUATION: Final = re.compile(r"(?P<decimal>(?<=\d)\.(?=\d))|[^\w\s]|_")
_THOUSANDS: Final = re.compile(r"(?<=\d),(?=\d{3}\b)")

_ONLY_LETTER: Final = re.compile(r"^\W*\(?([A-Ea-e])\)?\W*$")
_ANSWER_IS: Final = re.compile(
    r"\banswer\b[^A-Za-z0-9]{0,3}(?:is\b)?\s*(?:option\s*|choice\s*)?:?\s*\(?([A-E])\b",
    re.IGNORECASE,
)
_LEADING: Final = re.compile(r"^\W*\(?([A-E])(?:\)|[.:](?!\w))")
_PARENTHESISED: Final = re.compile(r"\(([A-E])\)")
# A lone capital letter; "A" only when it is not the article ("A cat ...").
_LONE: Final = re.compile(r"\b([B-E]|A(?!\s+[a-z]))\b")

_GSM_MARK: Final = "####"
_NUMBER: Final = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def normalize(text: str) -> str:
    """SQuAD-style: case, punctuation, articles and whitespace do not matter."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _THOUSANDS.sub("", text)
    text = _PUNCTUATION.sub(lambda m: "." if m.group("decimal") else "", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def choice(text: str) -> str | None:
    """The option letter A-E a reply picks, or None when it picks none.

    In order of trust: the whole reply is a letter; "answer is X"; the reply starts with
    "X." or "(X)"; the last "(X)"; the last lone capital letter.
    """
    match = _ONLY_LETTER.match(text.strip())
    if match:
        return match.group(1).upper()
    found = _ANSWER_IS.findall(text)
    if found:
        return str(found[-1]).upper()
    match = _LEADING.match(text.strip())
    if match:
        return match.group(1)
    for pattern in (_PARENTHESISED, _LONE):
        found = pattern.findall(text)
        if found:
            return str(found[-1])
    return None


def number(text: str) -> float | None:
    """The answer of a GSM8K-style text: what follows the last "####", else its last number.

    Thousands separators, currency signs and a trailing period do not matter.
    """
    if _GSM_MARK in text:
        text = text.rsplit(_GSM_MARK, 1)[1]
    found = _NUMBER.findall(text)
    if not found:
        return None
    return float(found[-1].replace(",", ""))
