"""Generate the EvalTask CRD from the pydantic models.

pydantic writes JSON Schema; Kubernetes wants a structural OpenAPI v3 schema. The
differences handled here: references are inlined, `X | None` becomes an optional X,
`int | str` becomes x-kubernetes-int-or-string, patternProperties (typed
map keys) become additionalProperties, free-form objects preserve unknown
fields, and keywords Kubernetes rejects (title, default, propertyNames) are dropped.
Defaults are applied by the operator, not the API server, so a stored object shows what
the user wrote.

`python -m eval_operator.crd` prints the CRD; `make crds` writes crds/evaltask.yaml.
"""

from __future__ import annotations

import sys
from typing import Any, Final

import yaml

from eval_operator import constants, spec, statustypes

CRD_NAME: Final = f"{constants.PLURAL}.{constants.GROUP}"
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


def build_crd() -> dict[str, Any]:
    spec_schema = model_schema(spec.EvalTaskSpec)
    status_schema = model_schema(statustypes.EvalTaskStatus)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": constants.GROUP,
            "names": {
                "kind": constants.KIND,
                "listKind": f"{constants.KIND}List",
                "plural": constants.PLURAL,
                "singular": constants.SINGULAR,
                "shortNames": [constants.SHORT_NAME],
                "categories": ["evals"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": constants.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        _column("Phase", "string", ".status.phase"),
                        _column("Progress", "string", ".status.progress"),
                        _column("Failed", "integer", ".status.failed"),
                        _column("Age", "date", ".metadata.creationTimestamp"),
                        _column("Models", "string", ".spec.models[*].name", priority=1),
                        _column("Tasks", "string", ".spec.tasks[*].name", priority=1),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "EvalTask evaluates model services on evaluation "
                            "sets packaged as container images: one Job per (model, task), "
                            "serially per model.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, kind: str, path: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def render() -> str:
    header = "# Generated from operator/eval_operator/spec.py by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
