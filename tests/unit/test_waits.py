"""A wait for the cluster: its backoff, and the ReadyToStart condition that dates it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eval_operator import conditions, reconcile, records, status
from tests.unit.test_status import SPEC, run

T = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = status.Wait(conditions.SECRET_NOT_FOUND, "Secret 'key' not found")
QUOTA = status.Wait(conditions.JOB_REFUSED, "exceeded quota: evals", checked=False)


@pytest.mark.parametrize(
    ("waited", "delay"),
    [
        pytest.param(0, 2, id="the first check comes 2 s after the wait began"),
        pytest.param(2, 4, id="the second 4 s after the first"),
        pytest.param(6, 8, id="then twice as long each time"),
        pytest.param(30, 32, id="half a minute in, 32 s"),
        pytest.param(62, 60, id="never more than a minute apart"),
        pytest.param(86400, 60, id="however long it lasts"),
        pytest.param(-5, 2, id="a clock that went back waits the first delay"),
    ],
)
def test_wait_backoff(waited, delay):
    assert reconcile.Config().wait_backoff(waited) == delay


def ready(out):
    return conditions.get(out["conditions"], conditions.READY_TO_START)


def progressing(out):
    return conditions.get(out["conditions"], conditions.PROGRESSING)["message"]


def pending(message=""):
    view = run("a", "t1", "Pending")
    view.record = records.Record(message=message)
    return [view]


def test_a_wait_says_why_and_keeps_its_start_while_it_lasts():
    first = status.summarize(SPEC, pending(), {}, 1, T, wait=SECRET)
    cond = ready(first)
    assert (cond["status"], cond["reason"], cond["message"]) == (
        "False",
        "SecretNotFound",
        "Secret 'key' not found",
    )
    assert first["phase"] == "Pending"
    later = status.summarize(SPEC, pending(), first, 1, T + timedelta(minutes=5), wait=SECRET)
    assert ready(later)["lastTransitionTime"] == cond["lastTransitionTime"]
    assert status.waiting_since(later, "SecretNotFound") == "2026-01-01T00:00:00Z"
    assert status.waiting_since(later, "JobRefused") is None, "no such wait is on"


def test_a_wait_for_something_else_is_a_new_wait():
    first = status.summarize(SPEC, pending(), {}, 1, T, wait=SECRET)
    then = T + timedelta(minutes=5)
    quota = status.summarize(SPEC, pending(), first, 1, then, wait=QUOTA)
    assert ready(quota)["reason"] == "JobRefused"
    assert ready(quota)["lastTransitionTime"] == status.timestamp(then), "its bound starts now"
    types = [c["type"] for c in quota["conditions"]]
    assert types == [c["type"] for c in first["conditions"]], "in the same place"


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        pytest.param(None, ("True", "SpecAccepted"), id="no wait: the spec is valid"),
        pytest.param(SECRET, ("True", "SpecAccepted"), id="a missing Secret leaves it valid"),
        pytest.param(QUOTA, ("Unknown", "JobRefused"), id="a refused dry-run leaves it unknown"),
    ],
)
def test_spec_valid_while_waiting(wait, expected):
    out = status.summarize(SPEC, pending(), {}, 1, T, wait=wait)
    cond = conditions.get(out["conditions"], conditions.SPEC_VALID)
    assert (cond["status"], cond["reason"]) == expected


def test_runs_whose_job_create_was_refused_make_the_wait_from_their_records():
    views = pending(f"{records.JOB_REFUSED}: 403 Forbidden: exceeded quota: evals")
    out = status.summarize(SPEC, views, {}, 1, T)
    cond = ready(out)
    assert (cond["status"], cond["reason"]) == ("False", "JobRefused")
    assert cond["message"].startswith("a/t1: the API server refuses its Job")
    assert "exceeded quota: evals" in progressing(out)


def test_no_condition_until_something_waited_then_true_once_it_is_over():
    assert ready(status.summarize(SPEC, pending(), {}, 1, T)) is None
    waited = status.summarize(SPEC, pending(), {}, 1, T, wait=SECRET)
    over = status.summarize(SPEC, pending(), waited, 1, T + timedelta(seconds=8))
    assert (ready(over)["status"], ready(over)["reason"]) == ("True", "NothingBlocks")
    assert progressing(over) == "0/1 runs finished; the next runs are waiting to start"


def test_a_wait_beside_a_running_run_is_named_by_progressing():
    views = [run("a", "t1", "Running"), *pending()]
    out = status.summarize(SPEC, views, {}, 1, T, wait=SECRET)
    assert progressing(out) == "0/2 runs finished; others wait: Secret 'key' not found"
