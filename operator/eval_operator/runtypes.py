"""The EvalRun: the operator's durable record of one (model, task) run.

An EvalRun exists per run of the current spec, owned by its EvalTask; the run's Job is
owned by the EvalRun. Once its state is Succeeded or Failed the record is final: the Job
and pod are evidence that may vanish (pod garbage collection, a node going away), and
nothing re-derives a recorded result from them. Only a rerun or a fingerprint change
(which deletes the EvalRun) replaces it.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from eval_operator.spec import TaskConfig
from eval_operator.statustypes import MAX_MESSAGE, RunState

# Bounds that keep one EvalRun far below etcd's object size limit (the collector refuses
# results beyond them, see eval_runner.results).
MAX_METRICS: Final = 400
MAX_METRIC_NAME: Final = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class ConfigSource(_Model):
    """Which saved task configuration, at which version."""

    kind: str = Field(max_length=63, description="EvalTaskConfig or ClusterEvalTaskConfig.")
    name: str = Field(max_length=253, description="The config's name.")
    resource_version: str = Field(
        max_length=64, description="The config's metadata.resourceVersion when it was read."
    )


class EvalRunSpec(_Model):
    """Which run this is; written once by the operator."""

    model: str = Field(max_length=63, description="The model's name (spec.models[].name).")
    task: str = Field(max_length=63, description="The task's name (spec.tasks[].name).")
    fingerprint: str = Field(
        max_length=64, description="Hash of everything that determines the run's result."
    )
    config_ref: ConfigSource | None = Field(
        default=None,
        description="For a task with a configRef: the saved task configuration it was "
        "resolved from when this EvalRun was created.",
    )
    entry_fingerprint: str | None = Field(
        default=None,
        max_length=64,
        description="For a task with a configRef: hash of the tasks[] entry as written "
        "(configRef and overrides) with the model and the spec's other inputs. While it "
        "stays the same, the run keeps taskConfig, whatever the config says since.",
    )
    task_config: TaskConfig | None = Field(
        default=None,
        description="For a task with a configRef: the task it was resolved to, as the "
        "run's Job runs it.",
    )


class Metric(_Model):
    """One metric, as the task reported it."""

    name: str = Field(max_length=MAX_METRIC_NAME, description="The metric's name.")
    value: float = Field(description="Its value, a finite number.")


class RunProgress(_Model):
    """In-job progress read from the task's log while it runs."""

    done: int = Field(ge=0, description="Samples done.")
    total: int = Field(ge=0, description="Samples in all.")
    update_time: str | None = Field(default=None, description="When it was last read.")


class EvalRunStatus(_Model):
    """The run's state and result."""

    state: RunState = Field(
        default=RunState.PENDING, description="Pending, Running, Succeeded, Failed or Reused."
    )
    job: str = Field(default="", max_length=63, description="The run's Job.")
    attempts: int = Field(
        default=0, ge=0, description="Attempts the Job started (disruptions are not failures)."
    )
    start_time: str | None = Field(default=None, description="When the run's Job started.")
    completion_time: str | None = Field(default=None, description="When the run finished.")
    metrics: list[Metric] = Field(
        default_factory=list,
        max_length=MAX_METRICS,
        description="The run's metrics, in the order the task reported them.",
    )
    score: float | None = Field(
        default=None,
        description="primaryMetric's value (default: the first metric), or metricWeights' "
        "weighted mean.",
    )
    progress: RunProgress | None = Field(
        default=None, description="While Running: progress from the task's log."
    )
    message: str = Field(
        default="", max_length=MAX_MESSAGE, description="Why the run waits or failed."
    )
    reused_from: str = Field(
        default="",
        max_length=317,
        description="namespace/name of the EvalRun whose result was reused.",
    )
