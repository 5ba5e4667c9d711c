"""Evaluation sets: JSONL rows into samples, with configurable column names.

A source is a path (typically on a mounted volume) or `builtin:<name>`, one of the small
sets shipped in this package (eval_runner/datasets/<name>.jsonl). Problems that would make
every score meaningless (no row has the answer column, ids repeat) stop the run here with
the line and the columns seen, rather than showing up later as a score of 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from eval_runner.config import Fields
from eval_runner.errors import DatasetError

BUILTIN_PREFIX: Final = "builtin:"
_DIGEST: Final = json.JSONEncoder(ensure_ascii=False)  # as json.dumps, built once
Message = dict[str, str]


@dataclass(frozen=True)
class Sample:
    id: str
    query: str | None = None
    messages: tuple[Message, ...] | None = None
    answers: tuple[str, ...] = ()
    prediction: str | None = None

    @property
    def digest(self) -> str:
        """A short hash of what the model is asked: an answer is reused only for the same."""
        text = _DIGEST.encode([self.query, self.messages])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def question(self) -> str:
        """The query, or the conversation as `role: content` lines (for judges and reports)."""
        if self.query is not None:
            return self.query
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.messages or ())


def builtin_names() -> list[str]:
    folder = resources.files("eval_runner") / "datasets"
    return sorted(
        p.name.removesuffix(".jsonl") for p in folder.iterdir() if p.name.endswith(".jsonl")
    )


def read_text(source: str) -> str:
    if source.startswith(BUILTIN_PREFIX):
        name = source.removeprefix(BUILTIN_PREFIX)
        if name not in builtin_names():
            raise DatasetError(
                f"EVAL_DATASET={source!r}: no such builtin set; "
                f"choose from {', '.join(BUILTIN_PREFIX + n for n in builtin_names())}"
            )
        return (resources.files("eval_runner") / "datasets" / f"{name}.jsonl").read_text("utf-8")
    try:
        return Path(source).read_text("utf-8")
    except FileNotFoundError:
        raise DatasetError(
            f"EVAL_DATASET={source!r}: no such file (is its volume mounted?)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"EVAL_DATASET={source!r} cannot be read: {e}") from None


def load(source: str, fields: Fields, limit: int | None = None) -> list[Sample]:
    rows = parse_rows(read_text(source).splitlines(), source)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise DatasetError(f"EVAL_DATASET={source!r} has no rows")
    samples = [to_sample(number, row, fields) for number, row in rows]
    seen: dict[str, int] = {}
    for (number, _), sample in zip(rows, samples, strict=True):
        if sample.id in seen:
            raise DatasetError(
                f"{source} line {number}: id {sample.id!r} repeats line {seen[sample.id]}; "
                f"ids ({fields.id}) must be unique so that a rerun can resume"
            )
        seen[sample.id] = number
    return samples


def parse_rows(lines: Iterable[str], source: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{source} line {number} is not valid JSON: {e}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{source} line {number} is not a JSON object")
        rows.append((number, row))
    return rows


def to_sample(number: int, row: dict[str, Any], fields: Fields) -> Sample:
    where = f"line {number}"
    raw_id = row.get(fields.id)
    messages = row.get(fields.messages)
    if messages is not None:
        messages = _messages(messages, f"{where}: {fields.messages}")
    query = row.get(fields.query)
    prediction = row.get(fields.prediction)
    return Sample(
        id=str(number) if raw_id is None else _text(raw_id),
        query=None if query is None else _text(query),
        messages=messages,
        answers=_answers(row.get(fields.answer)),
        prediction=None if prediction is None else _text(prediction),
    )


def check(samples: Sequence[Sample], fields: Fields, inference: bool, needs_answer: bool) -> None:
    """Fail on a column-name mistake, the kind that would otherwise score every sample 0."""
    if needs_answer and not any(s.answers for s in samples):
        raise DatasetError(
            f"no row has the answer column {fields.answer!r} (EVAL_ANSWER_FIELD); "
            "the scorers need a reference answer"
        )
    if inference:
        for i, sample in enumerate(samples):
            if sample.query is None and sample.messages is None:
                raise DatasetError(
                    f"sample {sample.id!r} (row {i + 1}) has neither {fields.query!r} "
                    f"(EVAL_QUERY_FIELD) nor {fields.messages!r} (EVAL_MESSAGES_FIELD)"
                )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _answers(value: Any) -> tuple[str, ...]:
    """One reference answer or a list of acceptable ones."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(_text(v) for v in value)
    return (_text(value),)


def _messages(value: Any, where: str) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where} must be a non-empty list of {{role, content}} objects")
    out: list[Message] = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise DatasetError(f"{where}[{i}] must be an object with string role and content")
        out.append({"role": message["role"], "content": message["content"]})
    return tuple(out)
