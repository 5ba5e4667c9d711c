"""The CRD is generated from the pydantic models and must not drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eval_operator import crd

ROOT = Path(__file__).resolve().parents[2]


def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def schema():
    return crd.build("evaltask")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("which", list(crd.CRDS))
@pytest.mark.parametrize("folder", ["crds", "charts/eval-operator/crds"])
def test_checked_in_crds_match_the_models(folder, which):
    assert (ROOT / folder / f"{which}.yaml").read_text() == crd.render(which), (
        f"{folder}/{which}.yaml is stale: run `make crds`"
    )


def test_the_evalrun_crd_prints_model_task_state_score_and_wide_columns():
    version = crd.build("evalrun")["spec"]["versions"][0]
    names = crd.build("evalrun")["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("EvalRun", "evalruns", ["er"])
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Model", 0),
        ("Task", 0),
        ("State", 0),
        ("Score", 0),
        ("Age", 0),
        ("Attempts", 1),
        ("Progress", 1),
        ("Job", 1),
    ]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["metrics"]["type"] == "array", "a list keeps the task's order"
    assert status["metrics"]["maxItems"] == 400
    assert status["message"]["maxLength"] == 2048


def test_the_matrix_is_bounded_in_the_crd():
    rules = schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert rules[0]["rule"] == "self.models.size() * self.tasks.size() <= 1024"


def test_schema_is_structural():
    for path, node in walk(schema()):
        for banned in (
            "$ref",
            "anyOf",
            "$defs",
            "title",
            "default",
            "propertyNames",
            "patternProperties",
            "additionalProperties",
        ):
            if banned == "additionalProperties" and isinstance(node.get(banned), dict):
                continue  # typed maps are structural
            assert banned not in node, f"{banned} at {path}"
        if "properties" in node:
            assert node.get("type") == "object", path


def test_names_printer_columns_and_status_subresource():
    doc = crd.build("evaltask")
    names = doc["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (
        "EvalTask",
        "evaltasks",
        "evaltask",
        ["et"],
    )
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Progress"] == ".status.progress"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_api_server_side_rules_are_exported():
    spec = schema()["properties"]["spec"]
    assert spec["required"] == ["models", "tasks"]
    for key in ("models", "tasks"):
        assert spec["properties"][key]["x-kubernetes-list-type"] == "map"
        assert spec["properties"][key]["x-kubernetes-list-map-keys"] == ["name"]
        assert spec["properties"][key]["minItems"] == 1
    model = spec["properties"]["models"]["items"]
    assert model["properties"]["name"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    auth_rules = model["properties"]["auth"]["x-kubernetes-validations"]
    assert auth_rules[0]["rule"] == "has(self.secretRef) != has(self.value)"
    task = spec["properties"]["tasks"]["items"]
    env_rule = task["properties"]["env"]["x-kubernetes-validations"][0]["rule"]
    assert "EVAL_OUTPUT_DIR" in env_rule and "EVAL_TASK_NAME" in env_rule
    assert "x-kubernetes-validations" in spec["properties"]["parameters"]
    source = task["properties"]["mounts"]["items"]["properties"]["source"]
    assert "size() == 1" in source["x-kubernetes-validations"][0]["rule"]
    cpu = task["properties"]["resources"]["properties"]["requests"]["additionalProperties"]
    assert cpu == {"x-kubernetes-int-or-string": True}


def test_every_field_has_a_description():
    missing = [
        path
        for path, node in walk(schema()["properties"]["spec"])
        if isinstance(node, dict)
        and "type" in node
        and path.count(".properties.")
        and "description" not in node
        and not path.endswith(("items", "additionalProperties"))
    ]
    assert missing == []


def test_rendered_yaml_round_trips():
    assert yaml.safe_load(crd.render()) == crd.build("evaltask")
