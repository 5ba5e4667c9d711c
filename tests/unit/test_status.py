"""Runs -> phase, progress, counts, conditions, leaderboard."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eval_operator import plan, records, spec, status

T = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 1, 2, tzinfo=UTC)
SPEC = spec.parse_spec(
    {
        "models": [{"name": m, "url": "http://x/v1"} for m in ("a", "b", "c")],
        "tasks": [
            {"name": "t1", "image": "i"},
            {"name": "t2", "image": "i", "primaryMetric": "f1", "weight": 3},
        ],
    }
)


def run(model, task, state, metrics=None, start=None, spec_=SPEC, probing=None):
    """A run as the plan leaves it: its desired run and its record, scored as reconcile does."""
    m = next(x for x in spec_.models if x.name == model)
    t = next(x for x in spec_.tasks if x.name == task)
    final = state in ("Succeeded", "Failed", "Reused")
    record = records.Record(
        state=state,
        metrics=tuple((metrics or {}).items()),
        start_time=start,
        completion_time="2026-01-01T00:10:00Z" if final else None,
    ).with_score(t)
    view = plan.RunView(plan.DesiredRun(m, t, "f", f"et-{model}-{task}"), record, exists=True)
    view.waiting_for_model = probing
    return view


def entries(views):
    return [records.entry(v.run.model.name, v.run.task.name, v.record) for v in views]


@pytest.mark.parametrize(
    ("states", "suspend", "phase"),
    [
        pytest.param(["Pending"] * 2, False, "Pending", id="nothing started is Pending"),
        pytest.param(["Running", "Pending"], False, "Running", id="a running run is Running"),
        pytest.param(
            ["Succeeded", "Pending"], False, "Running", id="some done, some waiting is Running"
        ),
        pytest.param(
            ["Succeeded", "Reused"], False, "Succeeded", id="all succeeded or reused is Succeeded"
        ),
        pytest.param(
            ["Succeeded", "Failed"], False, "Failed", id="finished with a failure is Failed"
        ),
        pytest.param(
            ["Succeeded", "Pending"],
            True,
            "Suspended",
            id="suspended while runs remain is Suspended",
        ),
        pytest.param(
            ["Succeeded", "Succeeded"],
            True,
            "Succeeded",
            id="suspending a finished task changes nothing",
        ),
    ],
)
def test_phase(states, suspend, phase):
    s = SPEC.model_copy(update={"suspend": suspend})
    runs = [
        run("a", f"t{i + 1}", st, start="2026-01-01T00:00:00Z" if st == "Running" else None)
        for i, st in enumerate(states)
    ]
    assert status.summarize(s, runs, {}, 1, T)["phase"] == phase


def test_counts_progress_and_schema():
    runs = [
        run("a", "t1", "Succeeded", {"acc": 1}),
        run("a", "t2", "Failed"),
        run("b", "t1", "Reused", {"acc": 1}),
        run("b", "t2", "Running", start="S"),
    ]
    out = status.summarize(SPEC, runs, {}, 4, T)
    assert (out["progress"], out["total"], out["completed"], out["succeeded"], out["failed"]) == (
        "3/4",
        4,
        3,
        2,
        1,
    )
    assert out["observedGeneration"] == 4
    assert out["startTime"] == "S"
    assert "completionTime" not in out
    status.validate(out)  # the CRD's status schema accepts it


def test_conditions_move_only_on_a_flip():
    runs = [run("a", "t1", "Running", start="S"), run("a", "t2", "Pending")]
    first = status.summarize(SPEC, runs, {}, 1, T)
    second = status.summarize(SPEC, runs, first, 1, T2)
    assert first["conditions"] == second["conditions"]
    runs[0] = run("a", "t1", "Succeeded", {"acc": 1})
    runs[1] = run("a", "t2", "Succeeded", {"f1": 1})
    third = status.summarize(SPEC, runs, second, 1, T2)
    by_type = {c["type"]: c for c in third["conditions"]}
    assert by_type["SpecValid"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert by_type["Complete"]["status"] == "True"
    assert by_type["Complete"]["lastTransitionTime"] == "2026-01-02T00:00:00Z"
    assert by_type["Progressing"]["reason"] == "AllRunsFinished"
    assert third["completionTime"] == "2026-01-01T00:10:00Z"


def test_leaderboard_weights_primary_metrics_and_shares_ranks():
    runs = [
        run("a", "t1", "Succeeded", {"acc": 0.9, "f1": 0.0}),  # primary: first metric
        run("a", "t2", "Succeeded", {"acc": 0.0, "f1": 0.5}),  # primary: f1, weight 3
        run("b", "t1", "Succeeded", {"acc": 0.6}),
        run("b", "t2", "Reused", {"f1": 0.6}),
        run("c", "t1", "Failed"),
        run("c", "t2", "Succeeded", {"acc": 1.0}),  # no f1: does not count
    ]
    board = status.leaderboard(SPEC, entries(runs))
    assert board == [
        {"model": "a", "score": pytest.approx((0.9 + 3 * 0.5) / 4), "rank": 1, "tasks": 2},
        {"model": "b", "score": pytest.approx(0.6), "rank": 1, "tasks": 2},
    ]


def test_an_invalid_spec_keeps_earlier_results():
    previous = status.summarize(SPEC, [run("a", "t1", "Succeeded", {"acc": 1})], {}, 1, T)
    out = status.invalid("spec.tasks[0].image: empty", "InvalidField", previous, 2, T2)
    assert out["phase"] == "Failed"
    assert out["runs"] == previous["runs"]
    valid = next(c for c in out["conditions"] if c["type"] == "SpecValid")
    assert (valid["status"], valid["reason"], valid["observedGeneration"]) == (
        "False",
        "InvalidField",
        2,
    )


def test_entries_are_compact_and_score_is_the_primary_metric():
    out = status.summarize(
        SPEC,
        [run("a", "t1", "Succeeded", {"acc": 0.9}), run("a", "t2", "Succeeded", {"f1": 0.4})],
        {},
        1,
        T,
    )
    assert out["runs"] == [
        {"model": "a", "task": "t1", "state": "Succeeded", "score": 0.9},
        {"model": "a", "task": "t2", "state": "Succeeded", "score": 0.4},
    ]


def test_a_waiting_probe_makes_model_reachable_false():
    out = status.summarize(SPEC, [run("b", "t1", "Pending", probing=42.0)], {}, 1, T)
    reachable = next(c for c in out["conditions"] if c["type"] == "ModelReachable")
    assert (reachable["status"], reachable["reason"]) == ("False", "ModelUnreachable")
    assert reachable["message"] == "waiting for models to answer: b (for 42s)"


def test_messages_stay_bounded_however_many_runs_fail():
    many = spec.parse_spec(
        {
            "models": [{"name": f"m{i}".ljust(63, "x"), "url": "http://x/v1"} for i in range(32)],
            "tasks": [{"name": f"t{i}", "image": "i"} for i in range(32)],
        }
    )
    runs = [run(m.name, t.name, "Failed", spec_=many) for m in many.models for t in many.tasks]
    out = status.summarize(many, runs, {}, 1, T)
    complete = next(c for c in out["conditions"] if c["type"] == "Complete")
    assert len(complete["message"]) <= 2048
    status.validate(out)
