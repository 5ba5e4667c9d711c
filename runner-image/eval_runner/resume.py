"""Whether the journals in the output folder may be resumed, or belong to another setup.

A rerun into the same folder must not send an answered sample again, but it must also not
reuse answers produced under different settings: with a persistent output volume, the
operator gives a (model, task) pair the same folder after its spec changed, say a new
temperature. So resume.json records a fingerprint of the settings that determine the
predictions (service, model id, API, generation parameters, prompts) and one of those that
determine the judge's reviews; a journal whose fingerprint differs is started over. Per
sample, a prediction is reused only if it was made for the same input (its digest), and a
judge's review only for the same prediction and reference. Rows added to the dataset, or a
new EVAL_LIMIT, keep what was answered. EVAL_RESUME=false starts over in any case.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from eval_runner import store
from eval_runner.config import Config
from eval_runner.pipeline import JUDGE, Record
from eval_runner.samples import Sample

FILE_NAME: Final = "resume.json"
PREDICTIONS: Final = "predictions.jsonl"
REVIEWS: Final = "reviews.jsonl"


@dataclass(frozen=True)
class Earlier:
    """What an earlier run into the folder left that this one takes up."""

    known: list[tuple[Sample, Record]]  # samples with a prediction, to score only
    pending: list[Sample]  # samples to send to the model
    judged: dict[str, Record]  # reviews holding a judge's score
    predictions_intact: int  # bytes of the journals to keep (a torn last line is cut off)
    reviews_intact: int

    @property
    def resumed(self) -> bool:
        return self.predictions_intact > 0


def take_up(config: Config, rows: Sequence[Sample], mode: str, out: TextIO) -> Earlier:
    """Read the journals an earlier run left, if their settings match this run's.

    A sample whose last record is an error is tried again: a rerun after an outage should
    fix what the outage broke. Everything answered is never sent again.
    """
    keep = reusable(config.output_dir, fingerprints(config, mode), config.resume, out)
    ids = {s.id for s in rows}
    old_predictions: list[Record] = []
    old_reviews: list[Record] = []
    p_intact = r_intact = 0
    if "predictions" in keep:
        old_predictions, p_intact = store.read_journal(config.output_dir / PREDICTIONS)
    if "reviews" in keep:
        old_reviews, r_intact = store.read_journal(config.output_dir / REVIEWS)
    answered = {r["id"]: r for r in old_predictions if r.get("id") in ids}
    reviewed = {r["id"]: r for r in old_reviews if r.get("id") in ids}
    known: list[tuple[Sample, Record]] = []
    pending: list[Sample] = []
    judged: dict[str, Record] = {}
    for sample in rows:
        previous = answered.get(sample.id)
        if mode == "evaluation":
            prediction = _given(sample, config)
        elif _answers(previous, sample):
            prediction = previous  # type: ignore[assignment]  # _answers checked it
        else:
            pending.append(sample)
            continue
        known.append((sample, prediction))
        review = reviewed.get(sample.id)
        if _judges(review, sample, prediction):
            judged[sample.id] = review  # type: ignore[assignment]  # _judges checked it
    return Earlier(known, pending, judged, p_intact, r_intact)


def _answers(record: Record | None, sample: Sample) -> bool:
    """Whether an earlier prediction record answers this sample as it is now."""
    return (
        record is not None
        and "error" not in record
        and "prediction" in record
        and record.get("input") == sample.digest
    )


def _judges(review: Record | None, sample: Sample, prediction: Record) -> bool:
    """Whether an earlier review holds a judge's score for this prediction and reference."""
    return (
        review is not None
        and "error" not in review
        and JUDGE in review.get("scores", {})
        and review.get("prediction") == prediction.get("prediction")
        and review.get("answer") == list(sample.answers)
    )


def _given(sample: Sample, config: Config) -> Record:
    """The prediction record of an evaluation-only row."""
    if sample.prediction is None:
        error = f"the row has no {config.fields.prediction!r} (EVAL_PREDICTION_FIELD)"
        return {"id": sample.id, "error": error, "attempts": 0}
    return {"id": sample.id, "prediction": sample.prediction}


def fingerprints(config: Config, mode: str) -> dict[str, str]:
    """Hashes of the settings behind the predictions, and behind the judge's reviews."""
    model = config.model
    predictions: dict[str, Any] = {
        "mode": mode,
        "url": model.url if model and mode == "inference" else None,
        "model": model.model if model else None,
        "api": model.api if model else None,
        "generation": config.generation.body(),
        "system_prompt": config.system_prompt,
        "prompt_template": config.prompt_template,
    }
    judge = config.judge
    reviews = {
        "predictions": _digest(predictions),
        "judge": None
        if judge is None
        else [judge.endpoint.url, judge.endpoint.model, judge.prompt],
    }
    return {"predictions": _digest(predictions), "reviews": _digest(reviews)}


def reusable(output_dir: Path, wanted: dict[str, str], enabled: bool, out: TextIO) -> set[str]:
    """The journals ("predictions", "reviews") that may be resumed; records `wanted`."""
    path = output_dir / FILE_NAME
    try:
        found = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        found = {}
    keep = {name for name, value in wanted.items() if enabled and found.get(name) == value}
    journals = [output_dir / f"{name}.jsonl" for name in wanted if name not in keep]
    if any(p.exists() and p.stat().st_size for p in journals):
        why = "EVAL_RESUME=false" if not enabled else "the settings changed since"
        print(f"run: not resuming the earlier run in {output_dir} ({why})", file=out, flush=True)
    store.write_json(path, wanted)
    return keep


def _digest(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
