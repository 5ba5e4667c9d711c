"""A rerun request on the EvalTask: nothing is created while it is there."""

from __future__ import annotations

import pytest

from eval_operator import constants, plan
from tests.unit.test_plan import S, observe


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("failed", id="rerun=failed"),
        pytest.param("all", id="rerun=all"),
        pytest.param("maybe", id="an unknown value"),
    ],
)
def test_nothing_is_created_while_a_rerun_request_is_on_the_evaltask(mode):
    """A pass that sees the request again after its deletions (its removal failed) finds
    the runs it reran gone, with nothing of them made again yet: no run reran for it, so
    none is rerun twice. Creation follows once the request is removed."""
    p = plan.plan(S, observe(annotations={constants.ANNOTATION_RERUN: mode}))
    assert p.create_runs == [] and p.create_jobs == []
    assert p.rerun == mode
    assert plan.plan(S, observe()).create_jobs, "without the request, the runs start"
