"""Scores and the leaderboard never hold a number the API server cannot take (JSON has no
inf or nan): weighted means that do not overflow, as a table."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from eval_operator import plan, records, spec, status

BIG = 1e308
MAX = 1.7976931348623157e308


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([(0.5, 1.0), (1.0, 3.0)], 0.875),
        ([(BIG, 2.0), (BIG, 1.0)], BIG),
        ([(BIG, 2.0)], BIG),
        ([(MAX, 1.0), (MAX, 1.0), (MAX, 1.0)], MAX),
        ([(-BIG, 2.0), (-BIG, 5.0)], -BIG),
        ([(1.0, 1e308), (3.0, 1e308)], 2.0),
        ([(1.0, 1e-300), (3.0, 3e-300)], 2.5),
        ([(0.5, 0.0)], None),
        ([], None),
        ([(math.inf, 1.0)], None),
        ([(math.nan, 1.0)], None),
        ([(1.0, math.inf)], None),
        ([(0.5, 1.0), (0.9, 0.0)], 0.5),
    ],
    ids=[
        "weights are relative",
        "huge values under weights above one stay finite",
        "one huge heavy value is itself",
        "the largest float three times is itself, not inf",
        "huge negative values stay finite",
        "huge weights stay finite",
        "tiny weights do not vanish",
        "no positive weight is no mean",
        "nothing is no mean",
        "an infinite value is no mean",
        "nan is no mean",
        "an infinite weight is no mean",
        "a zero weight does not count",
    ],
)
def test_weighted_mean(pairs, expected):
    got = records.weighted_mean(pairs)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, rel=1e-12)
        assert math.isfinite(got)


def task(**extra):
    return spec.parse_spec(
        {
            "models": [{"name": "m", "url": "http://x/v1"}],
            "tasks": [{"name": "t", "image": "i", **extra}],
        }
    ).tasks[0]


@pytest.mark.parametrize(
    ("extra", "metrics", "expected"),
    [
        ({"metricWeights": {"a": 2, "b": 1}}, (("a", BIG), ("b", BIG)), BIG),
        ({"metricWeights": {"a": 0.7, "b": 0.3}}, (("a", 1.0), ("b", 0.0)), 0.7),
        ({}, (("a", BIG),), BIG),
        ({}, (("a", math.inf),), None),
    ],
    ids=[
        "metric weights over huge metrics give a finite score",
        "metric weights give their weighted mean",
        "a huge primary metric is its score",
        "an infinite primary metric is no score",
    ],
)
def test_score(extra, metrics, expected):
    got = records.score(task(**extra), metrics)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_a_huge_score_in_a_heavy_task_leaves_every_status_number_finite():
    s = spec.parse_spec(
        {
            "models": [{"name": "m", "url": "http://x/v1"}],
            "tasks": [{"name": "t1", "image": "i", "weight": 2}, {"name": "t2", "image": "i"}],
        }
    )
    views = [
        plan.RunView(
            plan.DesiredRun(s.models[0], t, "f", f"et-m-{t.name}"),
            records.Record(state="Succeeded", metrics=(("a", BIG),)).with_score(t),
            exists=True,
        )
        for t in s.tasks
    ]
    new = status.summarize(s, views, {}, 1, datetime(2026, 1, 1, tzinfo=UTC))
    assert new["leaderboard"] == [
        {"model": "m", "score": pytest.approx(BIG), "rank": 1, "tasks": 2}
    ]
    json.dumps(new, allow_nan=False)
    status.validate(new)
