"""The EvalTask status: pydantic models that give the CRD its status schema.

The status is compact by design (one small entry per run); each run's record and detail live
in its EvalRun (`runtypes.py`).

`status.py` builds plain dicts in this shape; a unit test validates them against these
models, so the schema and the code cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class RunState(StrEnum):
    """A run's state: its EvalRun's status.state and its entry in the EvalTask's status."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REUSED = "Reused"  # another EvalTask's Succeeded result of the same run (spec.reuse)


class Phase(StrEnum):
    """An EvalTask's status.phase."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


TERMINAL_STATES: Final = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.REUSED})
# Runs that have a result to score: Succeeded here or, reused, in another EvalTask.
SCORED_STATES: Final = frozenset({RunState.SUCCEEDED, RunState.REUSED})
# Messages the operator writes are cut to this many characters (objects stay bounded).
MAX_MESSAGE: Final = 2048


class _StatusModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class RunEntry(_StatusModel):
    """One (model, task) run, compactly: its details are in its EvalRun."""

    model: str = Field(description="The model's name.")
    task: str = Field(description="The task's name.")
    state: RunState = Field(description="Pending, Running, Succeeded, Failed or Reused.")
    score: float | None = Field(default=None, description="The run's score, once it has one.")


class LeaderboardEntry(_StatusModel):
    """A model ranked by the weighted mean of its tasks' scores."""

    model: str = Field(description="The model's name.")
    score: float = Field(description="Weighted mean (task weights) of its runs' scores.")
    rank: int = Field(description="1 is best; equal scores share a rank.")
    tasks: int = Field(description="How many tasks contributed to the score.")


class Condition(_StatusModel):
    """A Kubernetes condition."""

    type: str = Field(description="SpecValid, Progressing, Complete or ModelReachable.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason.")
    message: str = Field(default="", max_length=MAX_MESSAGE, description="What a user can act on.")
    last_transition_time: str = Field(description="When status last changed.")
    observed_generation: int = Field(default=0, description="The generation this describes.")


class EvalTaskStatus(_StatusModel):
    """Observed state of an EvalTask."""

    observed_generation: int = Field(default=0, description="The generation last reconciled.")
    phase: Phase = Field(
        default=Phase.PENDING, description="Pending, Running, Succeeded, Failed or Suspended."
    )
    progress: str = Field(default="0/0", description="completed/total.")
    total: int = Field(default=0, description="Runs: models x tasks.")
    completed: int = Field(default=0, description="Succeeded + Failed + Reused runs.")
    succeeded: int = Field(default=0, description="Succeeded or Reused runs.")
    failed: int = Field(default=0, description="Failed runs.")
    start_time: str | None = Field(default=None, description="When the first run started.")
    completion_time: str | None = Field(default=None, description="When the last run finished.")
    runs: list[RunEntry] = Field(
        default_factory=list, description="One compact entry per run; details in its EvalRun."
    )
    leaderboard: list[LeaderboardEntry] = Field(default_factory=list, description="Ranking.")
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")
