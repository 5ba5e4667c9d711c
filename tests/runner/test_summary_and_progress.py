"""Tables for the metrics of a run and for its progress reports."""

from __future__ import annotations

import io
import json

import pytest

from eval_runner import summary
from eval_runner.progress import Progress


def review(score, error=None):
    doc = {"scores": {"exact_match": score}}
    if error:
        doc["error"] = error
    return doc


def test_failed_samples_score_zero_and_count_as_errors():
    reviews = [review(1.0), review(1.0), review(0.0), review(0.0, error="HTTP 500")]
    predictions = [
        {"latency": 0.1, "prompt_tokens": 10, "completion_tokens": 2},
        {"latency": 0.3, "prompt_tokens": 12, "completion_tokens": 3},
        {"latency": 0.2, "prompt_tokens": 11, "completion_tokens": 1},
        {"error": "HTTP 500"},
    ]
    assert summary.metrics(["exact_match"], reviews, predictions) == {
        "exact_match": 0.5,
        "samples": 4,
        "errors": 1,
        "error_rate": 0.25,
        "latency_mean_seconds": 0.2,
        "latency_p95_seconds": 0.3,
        "prompt_tokens": 33,
        "completion_tokens": 6,
    }


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([1.0], 0.95, 1.0),
        ([float(i) for i in range(1, 21)], 0.95, 19.0),
        ([float(i) for i in range(1, 101)], 0.95, 95.0),
        ([float(i) for i in range(1, 101)], 0.5, 50.0),
    ],
    ids=["one value", "twenty values", "a hundred values", "the median"],
)
def test_percentile_by_nearest_rank(values, fraction, expected):
    assert summary.percentile(values, fraction) == expected


def test_the_metrics_document_has_the_contract_shape_and_rounded_values():
    values = summary.metrics(["exact_match"], [review(1.0)] * 2 + [review(0.0)], [{}] * 3)
    assert summary.document(values) == {
        "metrics": [
            {"name": "exact_match", "value": 0.666667},
            {"name": "samples", "value": 3},
            {"name": "errors", "value": 0},
            {"name": "error_rate", "value": 0.0},
        ]
    }


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_reports_at_most_once_per_interval_with_an_eta(tmp_path):
    clock, out = Clock(), io.StringIO()
    progress = Progress(tmp_path, total=10, interval=5.0, out=out, clock=clock)
    for _ in range(3):  # resumed samples: done at once, they do not count for the rate
        progress.advance(error=False, worked=False)
    for step in range(4):
        clock.now += 1.0
        progress.advance(error=step == 1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, "the first report, then nothing for 5 seconds"
    clock.now += 1.0
    progress.advance(error=False)
    snapshot = json.loads((tmp_path / "progress.json").read_text())
    assert snapshot == {
        "done": 8,
        "total": 10,
        "errors": 1,
        "elapsed_seconds": 5.0,
        "samples_per_second": 1.0,
        "eta_seconds": 2.0,
    }
    assert out.getvalue().splitlines()[-2:] == [
        "progress: 8/10 done, 1 errors, 1.0/s, eta 2s",
        "EVAL_PROGRESS done=8 total=10",  # the line the operator reads
    ]
