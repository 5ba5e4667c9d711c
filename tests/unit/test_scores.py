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
        pytest.param([(0.5, 1.0), (1.0, 3.0)], 0.875, id="weights are relative"),
        pytest.param(
            [(BIG, 2.0), (BIG, 1.0)], BIG, id="huge values under weights above one stay finite"
        ),
        pytest.param([(BIG, 2.0)], BIG, id="one huge heavy value is itself"),
        pytest.param(
            [(MAX, 1.0), (MAX, 1.0), (MAX, 1.0)],
            MAX,
            id="the largest float three times is itself, not inf",
        ),
        pytest.param([(-BIG, 2.0), (-BIG, 5.0)], -BIG, id="huge negative values stay finite"),
        pytest.param([(1.0, 1e308), (3.0, 1e308)], 2.0, id="huge weights stay finite"),
        pytest.param([(1.0, 1e-300), (3.0, 3e-300)], 2.5, id="tiny weights do not vanish"),
        pytest.param([(0.5, 0.0)], None, id="no positive weight is no mean"),
        pytest.param([], None, id="nothing is no mean"),
        pytest.param([(math.inf, 1.0)], None, id="an infinite value is no mean"),
        pytest.param([(math.nan, 1.0)], None, id="nan is no mean"),
        pytest.param([(1.0, math.inf)], None, id="an infinite weight is no mean"),
        pytest.param([(0.5, 1.0), (0.9, 0.0)], 0.5, id="a zero weight does not count"),
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
        pytest.param(
            {"metricWeights": {"a": 2, "b": 1}},
            (("a", BIG), ("b", BIG)),
            BIG,
            id="metric weights over huge metrics give a finite score",
        ),
        pytest.param(
            {"metricWeights": {"a": 0.7, "b": 0.3}},
            (("a", 1.0), ("b", 0.0)),
            0.7,
            id="metric weights give their weighted mean",
        ),
        pytest.param({}, (("a", BIG),), BIG, id="a huge primary metric is its score"),
        pytest.param({}, (("a", math.inf),), None, id="an infinite primary metric is no score"),
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
