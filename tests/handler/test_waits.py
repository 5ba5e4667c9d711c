"""Handler tier: what the cluster may yet fix is a wait, not a failure.

A Secret applied after its EvalTask, a quota that refuses the Jobs for a while: the runs
wait saying why (their EvalRun, Progressing, ReadyToStart), are looked at again with a
backoff (2 s, doubling to 60 s, from when the wait began), and start by themselves once
the cluster lets them. A refused Job waits at most the start timeout, then its run fails
with the API server's words. What only an edit fixes (a 422: the Job is invalid) stays
SpecValid=False.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from eval_operator import reconcile
from tests.handler.fake_api import FakeApi
from tests.handler.test_reconcile import NOW, job_for, record, spec

QUOTA = (
    403,
    "Forbidden",
    'jobs "x" is forbidden: exceeded quota: evals, requested: count/jobs.batch=1, '
    "used: count/jobs.batch=1, limited: count/jobs.batch=1",
)
CONFIG = reconcile.Config(runner_image="runner:test", start_timeout=600)


@pytest.fixture
def api():
    return FakeApi()


def at(api, seconds, config=CONFIG):
    """A pass `seconds` after NOW."""
    return reconcile.reconcile(api, "ns", "et", NOW + timedelta(seconds=seconds), config)


def condition(api, type_):
    return next((c for c in api.status("et").get("conditions", []) if c["type"] == type_), None)


def warnings(api, reason):
    return [e for e in api.events if e["type"] == "Warning" and e["reason"] == reason]


class Switch:
    """A refusal that an admin (or a finished Job) lifts: `on` until set False."""

    def __init__(self, answer, dry_run: bool | None = None):
        self.on = True
        self.answer = answer
        self.dry_run = dry_run  # None: dry-runs and creates alike

    def __call__(self, kind, body, dry_run):
        if kind != "Job" or not self.on:
            return None
        if self.dry_run is not None and dry_run != self.dry_run:
            return None
        return self.answer


def test_a_secret_applied_after_its_evaltask_is_waited_for_then_used(api):
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1", "t2")))
    outcome = at(api, 0)
    assert outcome is not None and not outcome.invalid
    assert api.jobs == {}
    status = api.status("et")
    assert status["phase"] == "Pending", "waiting, not Failed"
    assert condition(api, "SpecValid")["status"] == "True", "the spec itself is valid"
    ready = condition(api, "ReadyToStart")
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    assert ready["message"].startswith("spec.models[0].auth.secretRef: Secret 'key' not found")
    assert "Secret 'key' not found" in condition(api, "Progressing")["message"]
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending" and "Secret 'key' not found" in rec["message"]
    assert [w["message"] for w in warnings(api, "SecretNotFound")] == [ready["message"]]
    assert outcome.requeue_after == pytest.approx(2.0), "looked at again soon"

    assert at(api, 2).requeue_after == pytest.approx(4.0), "then less often"
    assert at(api, 6).requeue_after == pytest.approx(8.0)
    assert at(api, 600).requeue_after == pytest.approx(60.0), "at most a minute apart"
    assert len(warnings(api, "SecretNotFound")) == 1, "said once, not once per pass"
    assert condition(api, "ReadyToStart")["lastTransitionTime"] == ready["lastTransitionTime"]

    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    at(api, 660)
    assert api.job_names() == [job_for(api, "m1", "t1")], "it starts by itself"
    ready = condition(api, "ReadyToStart")
    assert (ready["status"], ready["reason"]) == ("True", "NothingBlocks")
    assert api.status("et")["phase"] == "Pending"
    assert "Secret" not in condition(api, "Progressing")["message"]


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(QUOTA, "exceeded quota: evals", id="a quota"),
        pytest.param(
            (400, "BadRequest", "admission webhook denied the request: no GPUs on Sundays"),
            "no GPUs on Sundays",
            id="a webhook",
        ),
    ],
)
def test_a_dry_run_admission_refuses_waits_and_heals_when_it_accepts(api, answer, words):
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    quota = Switch(answer)
    api.refuse = quota
    api.add_evaltask("et", spec(models=("m1", "m2"), tasks=("t1",)))
    outcome = at(api, 0)
    assert outcome is not None and not outcome.invalid
    assert api.jobs == {}
    assert api.status("et")["phase"] == "Pending"
    valid = condition(api, "SpecValid")
    assert valid["status"] == "Unknown", "the dry-run has not said yet"
    ready = condition(api, "ReadyToStart")
    assert (ready["status"], ready["reason"]) == ("False", "JobRefused")
    assert words in ready["message"]
    assert words in condition(api, "Progressing")["message"]
    for model in ("m1", "m2"):
        rec = record(api, model, "t1")
        assert rec["state"] == "Pending" and words in rec["message"]
    assert outcome.requeue_after == pytest.approx(2.0)
    assert len(warnings(api, "JobRefused")) == 1
    dry_runs = api.calls.count("dry_run_job")
    at(api, 2)
    assert api.calls.count("dry_run_job") > dry_runs, "asked again: not cached as a verdict"
    assert api.jobs == {}

    quota.on = False
    at(api, 6)
    assert len(api.jobs) == 2, "both start by themselves"
    assert condition(api, "SpecValid")["status"] == "True"
    assert condition(api, "ReadyToStart")["status"] == "True"
    dry_runs = api.calls.count("dry_run_job")
    at(api, 7)
    assert api.calls.count("dry_run_job") == dry_runs, "an accepted dry-run is kept"


def test_a_job_create_a_quota_refuses_waits_and_heals(api):
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    quota = Switch(QUOTA, dry_run=False)  # the dry-run got through; the cluster filled up
    api.refuse = quota
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    outcome = at(api, 0)
    assert outcome is not None and api.jobs == {}
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Pending", "waiting, not Failed"
    assert "the API server refuses its Job" in rec["message"]
    assert "exceeded quota: evals" in rec["message"]
    assert condition(api, "SpecValid")["status"] == "True"
    ready = condition(api, "ReadyToStart")
    assert (ready["status"], ready["reason"]) == ("False", "JobRefused")
    assert "exceeded quota: evals" in condition(api, "Progressing")["message"]
    assert api.status("et")["phase"] == "Pending"
    assert outcome.requeue_after == pytest.approx(2.0)
    assert at(api, 2).requeue_after == pytest.approx(4.0)
    writes = api.calls.count("patch_evalrun_status")
    at(api, 6)
    assert api.calls.count("patch_evalrun_status") == writes, "the same words are not rewritten"

    quota.on = False
    at(api, 14)
    name = job_for(api, "m1", "t1")
    at(api, 15)
    rec = record(api, "m1", "t1")
    assert rec["job"] == name and "refuses" not in rec["message"]
    assert condition(api, "ReadyToStart")["status"] == "True"
    api.succeed(name, {"accuracy": 0.5})
    at(api, 16)
    assert api.status("et")["phase"] == "Succeeded"


@pytest.mark.parametrize(
    "dry_run",
    [
        pytest.param(None, id="a quota that refuses the dry-run too"),
        pytest.param(False, id="a quota that refuses only the real create"),
    ],
)
def test_a_job_refused_for_longer_than_the_start_timeout_fails_with_the_servers_words(api, dry_run):
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    api.refuse = Switch(QUOTA, dry_run=dry_run)
    api.add_evaltask("et", spec(models=("m1",), tasks=("t1",)))
    config = reconcile.Config(runner_image="runner:test", start_timeout=120)
    at(api, 0, config)
    outcome = at(api, 100, config)
    assert record(api, "m1", "t1")["state"] == "Pending"
    assert outcome.requeue_after == pytest.approx(20.0), "looked at again when the wait ends"
    at(api, 120, config)
    at(api, 121, config)
    rec = record(api, "m1", "t1")
    assert rec["state"] == "Failed"
    assert "exceeded quota: evals" in rec["message"]
    assert "start timeout of 120s" in rec["message"]
    assert api.status("et")["phase"] == "Failed"
    assert api.jobs == {}


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(
            (413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728"),
            "Request entity too large",
            id="a Job too large is no wait",
        ),
        pytest.param(
            (422, "Invalid", "ValidatingAdmissionPolicy 'no-latest' denied request"),
            "no-latest",
            id="a Job an admission policy finds invalid is no wait",
        ),
    ],
)
def test_a_dry_run_refusal_no_wait_can_fix_is_spec_invalid(api, answer, words):
    api.add_secret("key", {"token": "Bearer sk-very-secret"})
    api.refuse = Switch(answer)
    api.add_evaltask("et", spec())
    outcome = at(api, 0)
    assert outcome.invalid and api.jobs == {}
    valid = condition(api, "SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "JobRejected")
    assert words in valid["message"]
    assert api.status("et")["phase"] == "Failed"
    assert [e["reason"] for e in api.events] == ["JobRejected"]
    assert outcome.requeue_after is None, "nothing to look at again until an edit"
