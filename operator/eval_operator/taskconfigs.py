"""Saved task configurations: resolving a tasks[] entry's configRef into its task.

Pure. An entry `{name, configRef, ...overrides}` resolves to the config's task with the
overrides the entry writes (version, args, timeoutSeconds and weight replace the config's;
env is merged by name, the entry's wins) under the entry's name. A run keeps the task it
was resolved to when its EvalRun was created (plan.desired_runs): an edit to the config
changes only runs still to be created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from eval_operator import spec


@dataclass(frozen=True)
class Found:
    """A config as read from the API server: its spec and resourceVersion, or why it
    cannot be used (`problem`, its spec is not a valid task configuration)."""

    kind: str
    name: str
    resource_version: str
    settings: spec.TaskSettings | None
    problem: str = ""


# A configRef -> its config, None when it does not exist.
Lookup = Callable[[spec.ConfigRef], Found | None]


class ResolveError(Exception):
    """The entry and its config do not make a valid task (an override conflicts)."""


def describe(ref: spec.ConfigRef) -> str:
    return f"{ref.kind} {ref.name!r}"


def from_body(body: Mapping[str, Any]) -> Found:
    """A config object as the API server returns it."""
    meta = body.get("metadata") or {}
    kind = str(body.get("kind") or "")
    name = str(meta.get("name") or "")
    version = str(meta.get("resourceVersion") or "")
    try:
        settings = spec.TaskSettings.model_validate(body.get("spec") or {})
    except ValidationError as e:
        problems = spec.problems_of(e)
        return Found(kind, name, version, None, "; ".join(str(p) for p in problems))
    return Found(kind, name, version, settings)


def merge_env(base: list[spec.EnvVar], over: list[spec.EnvVar]) -> list[spec.EnvVar]:
    """The config's env with the entry's on top: a name both set keeps its place in the
    config's order and takes the entry's value; the entry's other names follow."""
    mine = {e.name: e for e in over}
    merged = [mine.pop(e.name, e) for e in base]
    return merged + [e for e in over if e.name in mine]


def merge(entry: spec.TaskConfig, settings: spec.TaskSettings) -> spec.TaskConfig:
    """The task `entry` resolves to with `settings` (its config's spec).

    Raises ResolveError when the result is no valid task (a version next to a config's
    image that names its tag, say).
    """
    # Only what the config wrote: a default written out (version: latest) would conflict
    # with an image that names its tag.
    data: dict[str, Any] = settings.model_dump(by_alias=True, exclude_unset=True)
    written = entry.model_fields_set
    for field in ("version", "args", "timeout_seconds", "weight"):
        if field in written:
            data[to_camel(field)] = getattr(entry, field)
    if "env" in written:
        env = merge_env(list(settings.env), list(entry.env))
        data["env"] = [e.model_dump(by_alias=True, exclude_none=True) for e in env]
    data["name"] = entry.name
    try:
        return spec.TaskConfig.model_validate(data)
    except ValidationError as e:
        # Fields of the task, not of an EvalTask's spec: "version: ...", not "spec.version".
        said = "; ".join(
            f"{p.field[len('spec.') :] or 'task'}: {p.message}" for p in spec.problems_of(e)
        )
        raise ResolveError(said) from None


def settings_of(task: spec.TaskConfig) -> spec.TaskSettings:
    """A resolved task as a config's spec (what a run keeps and resolves again from)."""
    data = task.model_dump(by_alias=True, exclude_unset=True, exclude={"name", "config_ref"})
    return spec.TaskSettings.model_validate(data)
