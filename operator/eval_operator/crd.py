"""Generate the CRDs (EvalTask, EvalRun, EvalTaskConfig, ClusterEvalTaskConfig) from the
pydantic models.

pydantic writes JSON Schema; Kubernetes wants a structural OpenAPI v3 schema. The
differences handled here: references are inlined, `X | None` becomes an optional X,
`int | str` becomes x-kubernetes-int-or-string, patternProperties (typed
map keys) become additionalProperties, free-form objects preserve unknown
fields, and keywords Kubernetes rejects (title, default, propertyNames) are dropped.
Defaults are applied by the operator, not the API server, so a stored object shows what
the user wrote.

`python -m eval_operator.crd [evaltask|evalrun|evaltaskconfig|clusterevaltaskconfig]`
prints a CRD; `make crds` writes them all into crds/ and the chart.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml
from pydantic import BaseModel

from eval_operator import constants, runtypes, spec, statustypes

CRD_NAME: Final = f"{constants.EVALTASK.plural}.{constants.GROUP}"
RUN_CRD_NAME: Final = f"{constants.EVALRUN.plural}.{constants.GROUP}"
_DROP: Final = {"title", "default", "propertyNames", "$defs"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        # A description next to the reference (the field's) wins over the model's.
        node = {**target, **node}
    if "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        types = sorted(v.get("type", "") for v in variants)
        if types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        elif len(variants) == 1:
            merged = dict(variants[0])
            if "$ref" in merged:
                merged = {**defs[merged.pop("$ref").rsplit("/", 1)[-1]], **merged}
            node = {**merged, **{k: v for k, v in node.items() if k == "description"}}
        else:
            raise ValueError(f"cannot express anyOf {variants} in a structural schema")
    if "patternProperties" in node:
        # Not allowed in CRDs: the value schema stays, the key rule is a CEL rule in spec.py.
        [value_schema] = node.pop("patternProperties").values()
        node["additionalProperties"] = value_schema
    if node.get("type") == "object" and node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    if (
        node.get("type") == "object"
        and "properties" not in node
        and ("additionalProperties" not in node)
    ):
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        else:
            out[key] = _structural(value, defs)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def model_schema(model: type[Any]) -> dict[str, Any]:
    """The structural schema of one pydantic model, as the CRD embeds it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    return schema


@dataclass(frozen=True)
class Column:
    """One of `kubectl get`'s columns; a wide one shows with `-o wide` only."""

    name: str
    path: str
    type: str = "string"
    wide: bool = False

    def printer_column(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.path}
        if self.wide:
            column["priority"] = 1
        return column


# Every kind's last column but the wide ones, as kubectl's own tables have it.
AGE: Final = Column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Definition:
    """What one CRD says of its own; the rest (group, version, categories, the objects'
    apiVersion, kind and metadata, a required spec) is the same for all of ours."""

    names: constants.Kind
    description: str
    # The object's own top-level fields, each with its model; a status gets the status
    # subresource.
    properties: Mapping[str, type[BaseModel]]
    columns: tuple[Column, ...]
    scope: str = "Namespaced"


def _task_config(names: constants.Kind, scope: str) -> Definition:
    where = "in its namespace" if scope == "Namespaced" else "in every namespace"
    return Definition(
        names,
        f"{names.kind} is a saved task configuration: one evaluation set packaged as a container "
        f"image, which tasks[] entries of EvalTasks {where} name in their configRef.",
        {"spec": spec.TaskSettings},
        (Column("Image", ".spec.image"), Column("Version", ".spec.version"), AGE),
        scope,
    )


# Keyed by the name `python -m eval_operator.crd` and `make crds` know each by.
CRDS: Final = {
    definition.names.singular: definition
    for definition in (
        Definition(
            constants.EVALTASK,
            "EvalTask evaluates model services on evaluation sets packaged as container images: "
            "one Job per (model, task), serially per model.",
            {"spec": spec.EvalTaskSpec, "status": statustypes.EvalTaskStatus},
            (
                Column("Phase", ".status.phase"),
                Column("Progress", ".status.progress"),
                Column("Failed", ".status.failed", "integer"),
                AGE,
                Column("Models", ".spec.models[*].name", wide=True),
                Column("Tasks", ".spec.tasks[*].name", wide=True),
            ),
        ),
        Definition(
            constants.EVALRUN,
            "EvalRun is the operator's durable record of one (model, task) run of an EvalTask: "
            "its state and result. Written by the operator only; deleting one reruns that run.",
            {"spec": runtypes.EvalRunSpec, "status": runtypes.EvalRunStatus},
            (
                Column("Model", ".spec.model"),
                Column("Task", ".spec.task"),
                Column("State", ".status.state"),
                Column("Score", ".status.score", "number"),
                AGE,
                Column("Attempts", ".status.attempts", "integer", wide=True),
                Column("Progress", ".status.progress.done", wide=True),
                Column("Job", ".status.job", wide=True),
            ),
        ),
        _task_config(constants.TASK_CONFIG, "Namespaced"),
        _task_config(constants.CLUSTER_TASK_CONFIG, "Cluster"),
    )
}


def build(which: str = "evaltask") -> dict[str, Any]:
    """One of the CRDS, as the API server takes it."""
    definition = CRDS[which]
    names = definition.names
    version: dict[str, Any] = {"name": constants.VERSION, "served": True, "storage": True}
    if "status" in definition.properties:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names.plural}.{constants.GROUP}"},
        "spec": {
            "group": constants.GROUP,
            "names": {
                "kind": names.kind,
                "listKind": f"{names.kind}List",
                "plural": names.plural,
                "singular": names.singular,
                "shortNames": [names.short_name],
                "categories": ["evals"],
            },
            "scope": definition.scope,
            "versions": [
                {
                    **version,
                    "additionalPrinterColumns": [c.printer_column() for c in definition.columns],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": definition.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                **{
                                    name: model_schema(model)
                                    for name, model in definition.properties.items()
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def render(which: str = "evaltask") -> str:
    header = (
        "# Generated from the pydantic models in operator/eval_operator/ by `make crds`. "
        "Do not edit.\n"
    )
    return header + yaml.safe_dump(build(which), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1] if len(sys.argv) > 1 else "evaltask"))
