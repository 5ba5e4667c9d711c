"""One run followed from its EvalRun and Job -> its record and what it asks of the pass
(plan._follow), as a table: no shared Plan is filled, so each case says all it does."""

from __future__ import annotations

import pytest

from eval_operator import plan
from eval_operator.statustypes import RunState
from tests.unit.test_plan import NOW, S, evalrun, job, observe

RUN = plan.desired_runs(S, "et")[0]  # m1/t1


def terminating(obj):
    return {**obj, "metadata": {**obj["metadata"], "deletionTimestamp": "T"}}


def foreign(obj):
    """A Job of the run's name that its EvalRun does not own (left from a deleted one)."""
    refs = [{"kind": "EvalRun", "uid": "someone-else", "controller": True}]
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": refs}}


@pytest.mark.parametrize(
    ("evalrun_", "job_", "suspend", "state", "writes", "delete_job", "suspends"),
    [
        pytest.param(None, None, False, RunState.PENDING, False, False, None, id="nothing yet"),
        pytest.param(
            None,
            job(S, "m1", "t1", "running"),
            False,
            RunState.PENDING,
            False,
            True,
            None,
            id="a job without its evalrun goes first",
        ),
        pytest.param(
            None,
            job(S, "m1", "t1", "running", terminating=True),
            False,
            RunState.PENDING,
            False,
            False,
            None,
            id="a job already going is not deleted twice",
        ),
        pytest.param(
            evalrun(S, "m1", "t1", "Succeeded"),
            None,
            False,
            RunState.SUCCEEDED,
            False,
            False,
            None,
            id="a final record stays, with or without its job",
        ),
        pytest.param(
            evalrun(S, "m1", "t1", "Running"),
            foreign(job(S, "m1", "t1", "running")),
            False,
            RunState.PENDING,
            True,
            True,
            None,
            id="a job the evalrun does not own is replaced",
        ),
        pytest.param(
            evalrun(S, "m1", "t1", "Running"),
            None,
            False,
            RunState.FAILED,
            True,
            False,
            None,
            id="a job deleted before the result fails the run",
        ),
        pytest.param(
            evalrun(S, "m1", "t1", "Running"),
            job(S, "m1", "t1", "done"),
            False,
            RunState.FAILED,
            True,
            False,
            None,
            id="a failed job fails the run",
        ),
        pytest.param(
            evalrun(S, "m1", "t1", "Pending"),
            job(S, "m1", "t1", "running"),
            True,
            RunState.PENDING,
            True,
            False,
            True,
            id="spec.suspend suspends a running job",
        ),
        pytest.param(
            evalrun(S, "m1", "t1", "Pending"),
            job(S, "m1", "t1", "running", suspend=True, ours=True),
            False,
            RunState.PENDING,
            True,
            False,
            False,
            id="resumed: the job the operator suspended",
        ),
        pytest.param(
            evalrun(S, "m1", "t1", "Pending"),
            job(S, "m1", "t1", "running", suspend=True),
            False,
            RunState.PENDING,
            True,
            False,
            None,
            id="a job someone else suspended stays so",
        ),
    ],
)
def test_follow(evalrun_, job_, suspend, state, writes, delete_job, suspends):
    observed = observe(suspend=suspend)
    assert observed.now == NOW
    followed = plan._follow(RUN, evalrun_, job_, {}, observed, 600.0, "")
    assert followed.view.record.state == state
    assert (followed.write is not None) == writes
    if writes:
        assert followed.write == followed.view.record
    assert followed.delete_job is delete_job
    assert followed.suspend is suspends
