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
from typing import Any, Final

import yaml

from eval_operator import constants, runtypes, spec, statustypes

CRD_NAME: Final = f"{constants.PLURAL}.{constants.GROUP}"
RUN_CRD_NAME: Final = f"{constants.RUN_PLURAL}.{constants.GROUP}"
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


def _crd(
    kind: str,
    plural: str,
    singular: str,
    short_name: str,
    description: str,
    columns: list[dict[str, Any]],
    properties: dict[str, Any],
    required: list[str],
    scope: str = "Namespaced",
) -> dict[str, Any]:
    version: dict[str, Any] = {"name": constants.VERSION, "served": True, "storage": True}
    if "status" in properties:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{constants.GROUP}"},
        "spec": {
            "group": constants.GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": [short_name],
                "categories": ["evals"],
            },
            "scope": scope,
            "versions": [
                {
                    **version,
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": description,
                            "required": required,
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                **properties,
                            },
                        }
                    },
                }
            ],
        },
    }


def build_crd() -> dict[str, Any]:
    """The EvalTask CRD."""
    return _crd(
        constants.KIND,
        constants.PLURAL,
        constants.SINGULAR,
        constants.SHORT_NAME,
        "EvalTask evaluates model services on evaluation sets packaged as container images: "
        "one Job per (model, task), serially per model.",
        [
            _column("Phase", "string", ".status.phase"),
            _column("Progress", "string", ".status.progress"),
            _column("Failed", "integer", ".status.failed"),
            _column("Age", "date", ".metadata.creationTimestamp"),
            _column("Models", "string", ".spec.models[*].name", priority=1),
            _column("Tasks", "string", ".spec.tasks[*].name", priority=1),
        ],
        {
            "spec": model_schema(spec.EvalTaskSpec),
            "status": model_schema(statustypes.EvalTaskStatus),
        },
        ["spec"],
    )


def build_run_crd() -> dict[str, Any]:
    """The EvalRun CRD: one per run, written by the operator only."""
    return _crd(
        constants.RUN_KIND,
        constants.RUN_PLURAL,
        constants.RUN_SINGULAR,
        constants.RUN_SHORT_NAME,
        "EvalRun is the operator's durable record of one (model, task) run of an EvalTask: "
        "its state and result. Written by the operator only; deleting one reruns that run.",
        [
            _column("Model", "string", ".spec.model"),
            _column("Task", "string", ".spec.task"),
            _column("State", "string", ".status.state"),
            _column("Score", "number", ".status.score"),
            _column("Age", "date", ".metadata.creationTimestamp"),
            _column("Attempts", "integer", ".status.attempts", priority=1),
            _column("Progress", "string", ".status.progress.done", priority=1),
            _column("Job", "string", ".status.job", priority=1),
        ],
        {
            "spec": model_schema(runtypes.EvalRunSpec),
            "status": model_schema(runtypes.EvalRunStatus),
        },
        ["spec"],
    )


def _config_crd(
    kind: str, plural: str, singular: str, short_name: str, scope: str
) -> dict[str, Any]:
    where = "in its namespace" if scope == "Namespaced" else "in every namespace"
    return _crd(
        kind,
        plural,
        singular,
        short_name,
        f"{kind} is a saved task configuration: one evaluation set packaged as a container "
        f"image, which tasks[] entries of EvalTasks {where} name in their configRef.",
        [
            _column("Image", "string", ".spec.image"),
            _column("Version", "string", ".spec.version"),
            _column("Age", "date", ".metadata.creationTimestamp"),
        ],
        {"spec": model_schema(spec.TaskSettings)},
        ["spec"],
        scope,
    )


def build_config_crd() -> dict[str, Any]:
    """The EvalTaskConfig CRD: a saved task configuration in one namespace."""
    return _config_crd(
        constants.CONFIG_KIND,
        constants.CONFIG_PLURAL,
        constants.CONFIG_SINGULAR,
        constants.CONFIG_SHORT_NAME,
        "Namespaced",
    )


def build_cluster_config_crd() -> dict[str, Any]:
    """The ClusterEvalTaskConfig CRD: a saved task configuration for every namespace."""
    return _config_crd(
        constants.CLUSTER_CONFIG_KIND,
        constants.CLUSTER_CONFIG_PLURAL,
        constants.CLUSTER_CONFIG_SINGULAR,
        constants.CLUSTER_CONFIG_SHORT_NAME,
        "Cluster",
    )


CRDS: Final = {
    "evaltask": build_crd,
    "evalrun": build_run_crd,
    "evaltaskconfig": build_config_crd,
    "clusterevaltaskconfig": build_cluster_config_crd,
}


def _column(name: str, kind: str, path: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def render(which: str = "evaltask") -> str:
    header = (
        "# Generated from the pydantic models in operator/eval_operator/ by `make crds`. "
        "Do not edit.\n"
    )
    return header + yaml.safe_dump(CRDS[which](), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render(sys.argv[1] if len(sys.argv) > 1 else "evaltask"))
