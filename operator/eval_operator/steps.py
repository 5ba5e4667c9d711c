"""A pass's writes as typed steps, in the order they are made (pure).

`steps_of` turns a plan into stages; the executor (executor.py) runs each stage's steps,
at once where it can, and the stages one after another. The order is the promise of
reconcile.py: the auth Secret the Jobs read first; then records, the only copy of a
result once its pod may go; then deletions, EvalRuns before Jobs (a refused deletion of a
record leaves its Job alone); then suspensions and TTLs; then creations, the EvalRuns
whose Jobs start now, those Jobs, the other EvalRuns (a chain's first Job does not wait
for the records of the runs after it); and last the removal of a rerun request, once the
deletions it asked for are made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eval_operator import plan, records


@dataclass(frozen=True)
class EnsureAuthSecret:
    """The Secret of the models' literal auth values (model name -> value)."""

    values: Mapping[str, str]


@dataclass(frozen=True)
class WriteRecord:
    name: str
    record: records.Record


@dataclass(frozen=True)
class DeleteEvalRun:
    name: str


@dataclass(frozen=True)
class DeleteJob:
    name: str


@dataclass(frozen=True)
class SetSuspended:
    name: str
    suspend: bool


@dataclass(frozen=True)
class ExpireJob:
    """The Job of a run whose record is final gets its ttlSecondsAfterFinished; made only
    once that record is written (the pod holds the result until then)."""

    name: str


@dataclass(frozen=True)
class CreateEvalRun:
    """The run's EvalRun, then its record where the plan has one (a reused result)."""

    run: plan.DesiredRun


@dataclass(frozen=True)
class CreateJob:
    """Made only when the run's EvalRun exists and its record is not final."""

    run: plan.DesiredRun


@dataclass(frozen=True)
class ClearRerun:
    """Remove the rerun request: its deletions are made."""


Step = (
    EnsureAuthSecret
    | WriteRecord
    | DeleteEvalRun
    | DeleteJob
    | SetSuspended
    | ExpireJob
    | CreateEvalRun
    | CreateJob
    | ClearRerun
)
Stage = tuple[Step, ...]


def steps_of(the_plan: plan.Plan, literal: Mapping[str, str], rerun: bool) -> list[Stage]:
    """The plan's writes as stages, in the order above; empty stages are left out.

    `literal`: the models' literal auth values; `rerun`: a rerun request is to be removed.
    """
    created = {r.name for r in the_plan.create_runs}
    starting = {r.name for r in the_plan.create_jobs}
    stages: list[Stage] = [
        (EnsureAuthSecret(literal),) if literal else (),
        tuple(
            WriteRecord(name, record)
            for name, record in the_plan.record.items()
            if name not in created  # written with its EvalRun, once that exists
        ),
        tuple(DeleteEvalRun(n) for n in the_plan.delete_runs),
        tuple(DeleteJob(n) for n in the_plan.delete_jobs),
        tuple(SetSuspended(n, True) for n in the_plan.suspend)
        + tuple(SetSuspended(n, False) for n in the_plan.unsuspend),
        tuple(ExpireJob(n) for n in the_plan.expire_jobs),
        tuple(CreateEvalRun(r) for r in the_plan.create_runs if r.name in starting),
        tuple(CreateJob(r) for r in the_plan.create_jobs),
        tuple(CreateEvalRun(r) for r in the_plan.create_runs if r.name not in starting),
        (ClearRerun(),) if rerun else (),
    ]
    return [stage for stage in stages if stage]
