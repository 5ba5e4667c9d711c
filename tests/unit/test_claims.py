"""Whose an object is that holds a name we were to create (a create's 409), as a table;
and what is left of a record the API server refused."""

from __future__ import annotations

import pytest

from eval_operator import constants, records

OWNER = records.Owner(constants.EVALTASK.kind, "et", "ns", "uid-now")
OURS = {
    constants.LABEL_MANAGED_BY: constants.MANAGED_BY,
    constants.LABEL_EVALTASK: "et",
    constants.LABEL_EVALTASK_UID: "uid-before",
}


def obj(labels, *refs):
    return {"metadata": {"name": "x", "labels": labels, "ownerReferences": list(refs)}}


def ref(kind, name, uid, controller=True):
    return {"kind": kind, "name": name, "uid": uid, "controller": controller}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            obj(OURS, ref(constants.EVALTASK.kind, "et", "uid-now")),
            "ours",
            id="controlled by this EvalTask is ours",
        ),
        pytest.param(
            obj(OURS),
            "leftover",
            id="ours by its labels and controlled by no one is a leftover (an orphaning delete)",
        ),
        pytest.param(
            obj(OURS, ref("ConfigMap", "keep", "c", controller=False)),
            "leftover",
            id="a reference that does not control it leaves it a leftover",
        ),
        pytest.param(
            obj(OURS, ref(constants.EVALTASK.kind, "et", "uid-before")),
            "leftover",
            id="controlled by a former EvalTask of this name is a leftover",
        ),
        pytest.param(
            obj(OURS, ref(constants.EVALTASK.kind, "other", "uid-other")),
            "foreign",
            id="controlled by another EvalTask is someone else's",
        ),
        pytest.param(
            obj(OURS, ref("Workflow", "et", "w")),
            "foreign",
            id="controlled by another kind is someone else's",
        ),
        pytest.param(
            obj({**OURS, constants.LABEL_EVALTASK: "other"}),
            "foreign",
            id="made for another EvalTask is someone else's",
        ),
        pytest.param(
            obj({constants.LABEL_EVALTASK: "et"}),
            "foreign",
            id="not made by this operator is someone else's",
        ),
        pytest.param(obj({}), "foreign", id="unlabelled is someone else's"),
    ],
)
def test_claim(body, expected):
    assert records.claim(body, OWNER, "et") == expected


def test_holder_says_what_controls_it_and_who_made_it():
    said = records.holder(obj({**OURS, constants.LABEL_EVALTASK: "b"}, ref("Workflow", "w", "1")))
    assert said == "controlled by Workflow 'w', made by eval-operator for EvalTask 'b'"
    assert records.holder(obj({})) == "controlled by no one, not made by eval-operator"


def test_a_refused_record_keeps_nothing_that_may_have_been_refused():
    new = records.Record(
        state="Succeeded",
        job="j",
        attempts=2,
        start_time="2026-01-01T00:00:00Z",
        metrics=(("a", 1.0),),
        score=1.0,
        message="x" * 10_000,
        progress={"done": 1, "total": 2},
    )
    left = records.refused_record(new, "413 too large", "2026-01-01T00:09:00Z")
    assert (left.state, left.job, left.attempts) == ("Failed", "j", 2)
    assert (left.metrics, left.score, left.progress) == ((), None, None)
    assert left.completion_time == "2026-01-01T00:09:00Z"
    assert left.message.startswith(records.REFUSED_RECORD + ": 413 too large")
    assert left.final
