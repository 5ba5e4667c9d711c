"""A pass's decision and its writes as stages (reconcile.decide, steps.steps_of), as
tables: which writes, in which order, with nothing written."""

from __future__ import annotations

from dataclasses import replace

import pytest

from eval_operator import conditions, constants, plan, reconcile, records, steps
from eval_operator import status as status_mod
from eval_operator.statustypes import RunState
from tests.unit.test_plan import NOW, S, observe

A, B, C = plan.desired_runs(S, "et")[:3]  # m1/t1, m1/t2, m2/t1
DONE = records.Record(state=RunState.SUCCEEDED)


def kinds(stages):
    """Each stage as (step kind, run or object name) pairs."""
    out = []
    for stage in stages:
        row = []
        for step in stage:
            run = getattr(step, "run", None)
            name = run.name if run is not None else getattr(step, "name", "")
            row.append((type(step).__name__, name))
        out.append(row)
    return out


@pytest.mark.parametrize(
    ("the_plan", "literal", "rerun", "expected"),
    [
        pytest.param(plan.Plan(), {}, False, [], id="nothing to do writes nothing"),
        pytest.param(
            plan.Plan(record={A.name: DONE, B.name: DONE}, create_runs=[B]),
            {},
            False,
            [[("WriteRecord", A.name)], [("CreateEvalRun", B.name)]],
            id="a record of a run still to be created is written with its EvalRun",
        ),
        pytest.param(
            plan.Plan(delete_runs=[A.name], delete_jobs=[A.name, B.name]),
            {},
            True,
            [
                [("DeleteEvalRun", A.name)],
                [("DeleteJob", A.name), ("DeleteJob", B.name)],
                [("ClearRerun", "")],
            ],
            id="EvalRuns, then Jobs, then the rerun request goes",
        ),
        pytest.param(
            plan.Plan(create_runs=[A, B, C], create_jobs=[A, C]),
            {"m1": "Bearer x"},
            False,
            [
                [("EnsureAuthSecret", "")],
                [("CreateEvalRun", A.name), ("CreateEvalRun", C.name)],
                [("CreateJob", A.name), ("CreateJob", C.name)],
                [("CreateEvalRun", B.name)],
            ],
            id="the auth secret, the starting runs, their Jobs, then the other runs",
        ),
        pytest.param(
            plan.Plan(
                record={A.name: DONE}, suspend=[B.name], unsuspend=[C.name], expire_jobs=[A.name]
            ),
            {},
            False,
            [
                [("WriteRecord", A.name)],
                [("SetSuspended", B.name), ("SetSuspended", C.name)],
                [("ExpireJob", A.name)],
            ],
            id="a ttl only after the record it follows",
        ),
    ],
)
def test_steps_of(the_plan, literal, rerun, expected):
    assert kinds(steps.steps_of(the_plan, literal, rerun)) == expected


def looked(wait=None, annotations=None, since="2026-01-01T00:00:00Z", reason=None):
    observed = observe(annotations=annotations)
    if reason is not None:  # a wait on since `since`, as the last status says
        cond = {
            "type": conditions.READY_TO_START,
            "status": "False",
            "reason": reason,
            "lastTransitionTime": since,
        }
        observed = replace(
            observed, evaltask={**observed.evaltask, "status": {"conditions": [cond]}}
        )
    owner = records.Owner(constants.EVALTASK.kind, "et", "ns", "uid")
    desired = plan.desired_runs(S, "et")
    return reconcile.Looked(observed, owner, S, desired, wait, [], {}, {})


REFUSED = status_mod.Wait(conditions.JOB_REFUSED, "quota exceeded", checked=False)
MISSING = status_mod.Wait(conditions.SECRET_NOT_FOUND, "Secret 'key' not found")
NO_CONFIG = status_mod.Wait(conditions.CONFIG_NOT_FOUND, "no config", checked=False)
CONFIG = reconcile.Config(start_timeout=600)


@pytest.mark.parametrize(
    ("the_looked", "jobs", "message"),
    [
        pytest.param(looked(), 2, "", id="nothing waits: each chain's first Job"),
        pytest.param(
            looked(MISSING, reason=conditions.SECRET_NOT_FOUND),
            0,
            "waiting: Secret 'key' not found",
            id="a missing secret blocks every Job",
        ),
        pytest.param(
            looked(REFUSED, reason=conditions.JOB_REFUSED, since="2025-12-31T23:55:00Z"),
            0,
            "waiting: quota exceeded",
            id="a refused dry-run blocks until the start timeout",
        ),
        pytest.param(
            looked(REFUSED, reason=conditions.JOB_REFUSED, since="2025-12-31T23:49:00Z"),
            2,
            "",
            id="past the start timeout the creates are tried",
        ),
        pytest.param(
            looked(NO_CONFIG, reason=conditions.CONFIG_NOT_FOUND),
            2,
            "",
            id="a missing config blocks only its own runs",
        ),
    ],
)
def test_decide_blocks_the_jobs_while_the_cluster_must_change(the_looked, jobs, message):
    decision = reconcile.decide(the_looked, CONFIG)
    created = [s for stage in decision.stages for s in stage if isinstance(s, steps.CreateJob)]
    assert len(created) == jobs
    said = {v.record.message for v in decision.the_plan.views if v.exists}
    assert said <= {message, ""} and (message in said or not message)


def test_decide_counts_the_refusal_from_its_start_and_warns_of_an_unknown_rerun():
    the_looked = looked(
        REFUSED,
        annotations={constants.ANNOTATION_RERUN: "everything"},
        reason=conditions.JOB_REFUSED,
        since="2025-12-31T23:59:00Z",
    )
    decision = reconcile.decide(the_looked, CONFIG)
    assert decision.refused_for == 60.0 and NOW.minute == 0
    assert [reason for _, reason, _ in decision.events] == [conditions.UNKNOWN_RERUN]
    assert isinstance(decision.stages[-1][0], steps.ClearRerun), "removed, having done nothing"
    assert not any(isinstance(s, steps.CreateEvalRun) for st in decision.stages for s in st)
