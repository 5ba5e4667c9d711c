"""Per-sample records into metrics.json's metrics and report.json's summary.

A sample that failed (the model or the judge never answered) scores 0 in every scorer and
counts once in `errors`: dividing by the answered samples only would reward a service for
timing out on the hard questions. The scores come first in metrics.json, so a task's
default primaryMetric (the first metric) is the first scorer. Values are rounded to 6
digits: far more than a score means, and it keeps the result small (README.md, size limit).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

DIGITS: Final = 6
TOP_ERRORS: Final = 10


def metrics(
    scorers: Sequence[str],
    reviews: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
) -> dict[str, float]:
    total = len(reviews)
    out: dict[str, float] = {}
    for name in scorers:
        values = [float(r["scores"].get(name, 0.0)) for r in reviews]
        out[name] = _round(sum(values) / total if total else 0.0)
    out["samples"] = total
    out["errors"] = sum(1 for r in reviews if "error" in r)
    out["error_rate"] = _round(out["errors"] / total if total else 0.0)
    latencies = sorted(p["latency"] for p in predictions if "latency" in p)
    if latencies:
        out["latency_mean_seconds"] = _round(sum(latencies) / len(latencies))
        out["latency_p95_seconds"] = _round(percentile(latencies, 0.95))
    for kind in ("prompt_tokens", "completion_tokens"):
        counts = [p[kind] for p in predictions if p.get(kind) is not None]
        if counts:
            out[kind] = sum(counts)
    return out


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def document(values: Mapping[str, float]) -> dict[str, Any]:
    """The metrics.json document of README.md's contract."""
    return {"metrics": [{"name": k, "value": v} for k, v in values.items()]}


def top_errors(reviews: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    counts = Counter(str(r["error"]) for r in reviews if "error" in r)
    return [{"error": e, "samples": n} for e, n in counts.most_common(TOP_ERRORS)]


def _round(value: float) -> float:
    return round(value, DIGITS)
