"""The EvalTask status: pydantic models that give the CRD its status schema.

`status.py` builds plain dicts in this shape; a unit test validates them against these
models, so the schema and the code cannot drift apart.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]
RunState = Literal["Pending", "Running", "Succeeded", "Failed", "Reused"]
TERMINAL_STATES: Final = frozenset({"Succeeded", "Failed", "Reused"})


class _StatusModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class RunStatus(_StatusModel):
    """One (model, task) run."""

    model: str = Field(description="The model's name.")
    task: str = Field(description="The task's name.")
    state: RunState = Field(description="Pending, Running, Succeeded, Failed or Reused.")
    job: str = Field(default="", description="The run's Job.")
    fingerprint: str = Field(description="Hash of everything that determines the result.")
    attempts: int = Field(default=0, description="Pods the run's Job has started.")
    start_time: str | None = Field(default=None, description="When the run's Job started.")
    completion_time: str | None = Field(default=None, description="When the run finished.")
    metrics: dict[str, float] = Field(default_factory=dict, description="The run's metrics.")
    message: str = Field(default="", description="Why the run is waiting or failed.")
    reused_from: str = Field(default="", description="The EvalTask whose result was reused.")


class LeaderboardEntry(_StatusModel):
    """A model ranked by the weighted mean of its tasks' primary metric."""

    model: str = Field(description="The model's name.")
    score: float = Field(description="Weighted mean of the primary metric over its tasks.")
    rank: int = Field(description="1 is best; equal scores share a rank.")
    tasks: int = Field(description="How many tasks contributed to the score.")


class Condition(_StatusModel):
    """A Kubernetes condition."""

    type: str = Field(description="SpecValid, Progressing, Complete or ModelReachable.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", description="What a user can act on.")
    last_transition_time: str = Field(description="When status last changed.")
    observed_generation: int = Field(default=0, description="The generation this describes.")


class EvalTaskStatus(_StatusModel):
    """Observed state of an EvalTask."""

    observed_generation: int = Field(default=0, description="The generation last reconciled.")
    phase: Phase = Field(
        default="Pending", description="Pending, Running, Succeeded, Failed or Suspended."
    )
    progress: str = Field(default="0/0", description="completed/total.")
    total: int = Field(default=0, description="Runs: models x tasks.")
    completed: int = Field(default=0, description="Succeeded + Failed + Reused runs.")
    succeeded: int = Field(default=0, description="Succeeded or Reused runs.")
    failed: int = Field(default=0, description="Failed runs.")
    start_time: str | None = Field(default=None, description="When the first run started.")
    completion_time: str | None = Field(default=None, description="When the last run finished.")
    runs: list[RunStatus] = Field(default_factory=list, description="One entry per run.")
    leaderboard: list[LeaderboardEntry] = Field(default_factory=list, description="Ranking.")
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")
