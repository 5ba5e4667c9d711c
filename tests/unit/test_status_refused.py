"""The small status written when the API server refuses the whole one, and RecordsWritten."""

from __future__ import annotations

from datetime import UTC, datetime

from eval_operator import conditions, plan, records, spec, status

T = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 1, 2, tzinfo=UTC)
SPEC = spec.parse_spec(
    {"models": [{"name": "m", "url": "http://x/v1"}], "tasks": [{"name": "t", "image": "i"}]}
)


def views(record):
    return [plan.RunView(plan.DesiredRun(SPEC.models[0], SPEC.tasks[0], "f", "r"), record, True)]


def cond(st, type_=conditions.RECORDS_WRITTEN):
    return conditions.get(st.get("conditions") or [], type_)


def test_the_small_status_keeps_counts_and_conditions_and_says_why():
    full = status.summarize(SPEC, views(records.Record(state="Succeeded")), {}, 1, T)
    small = status.refused_status(full, {}, "Request entity too large", 1, T)
    assert "runs" not in small and "leaderboard" not in small
    assert {k: small[k] for k in ("phase", "progress", "completed")} == {
        "phase": "Succeeded",
        "progress": "1/1",
        "completed": 1,
    }
    said = cond(small)
    assert (said["status"], said["reason"]) == ("False", conditions.STATUS_WRITE_REFUSED)
    assert "Request entity too large" in said["message"]
    assert cond(small, conditions.COMPLETE) is not None
    status.validate(small)
    # Refused again the next day: the condition has not flipped, its time stays.
    again = status.refused_status(full, small, "Request entity too large", 1, T2)
    assert cond(again)["lastTransitionTime"] == said["lastTransitionTime"]
    bare = status.refused_status(full, small, "ignored", 1, T2, bare=True)
    assert [c["type"] for c in bare["conditions"]] == [conditions.RECORDS_WRITTEN]
    assert "ignored" not in bare["conditions"][0]["message"]


def test_records_written_shows_only_once_something_was_refused_and_stays_after():
    ok = status.summarize(SPEC, views(records.Record(state="Pending")), {}, 1, T)
    assert cond(ok) is None
    lost = status.summarize(SPEC, views(records.Record(state="Pending")), ok, 1, T, {"m/t": "403"})
    said = cond(lost)
    assert (said["status"], said["reason"]) == ("False", conditions.RECORD_WRITE_REFUSED)
    assert "m/t: not recorded: 403" in said["message"]
    failed = records.Record(state="Failed", message=records.REFUSED_RECORD + ": 400 no")
    still = status.summarize(SPEC, views(failed), lost, 1, T2)
    assert cond(still)["status"] == "False" and "m/t: recorded as Failed" in cond(still)["message"]
    fine = status.summarize(SPEC, views(records.Record(state="Pending")), still, 1, T2)
    assert (cond(fine)["status"], cond(fine)["reason"]) == ("True", conditions.RECORDS_ACCEPTED)


def test_a_run_that_says_why_it_waits_is_named_though_an_earlier_one_says_nothing():
    s = spec.parse_spec(
        {
            "models": [{"name": m, "url": "http://x/v1"} for m in ("a", "b")],
            "tasks": [{"name": "t", "image": "i"}],
        }
    )
    vs = [
        plan.RunView(plan.DesiredRun(m, s.tasks[0], "f", m.name), records.Record(message=w), True)
        for m, w in zip(s.models, ("", "the name is taken"), strict=True)
    ]
    progressing = cond(status.summarize(s, vs, {}, 1, T), conditions.PROGRESSING)
    assert "(the name is taken)" in progressing["message"]
