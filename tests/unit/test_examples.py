"""The examples users copy: every EvalTask and task configuration in examples/*.yaml is valid
as the operator reads it, and the shared BFCL set resolves to the task bfcl.yaml writes out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from eval_operator import constants, naming, spec, taskconfigs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIG_KINDS = (constants.TASK_CONFIG.kind, constants.CLUSTER_TASK_CONFIG.kind)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def ours(kind: str) -> list[Any]:
    return [
        pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in documents(path)
        if doc["kind"] == kind
    ]


@pytest.mark.parametrize("doc", ours(constants.EVALTASK.kind))
def test_every_example_evaltask_is_a_valid_spec(doc):
    spec.parse_spec(doc["spec"])


@pytest.mark.parametrize("doc", [*ours(CONFIG_KINDS[0]), *ours(CONFIG_KINDS[1])])
def test_every_example_task_configuration_is_valid(doc):
    found = taskconfigs.from_body(doc)
    assert found.problem == "" and found.settings is not None


def test_the_shared_bfcl_set_resolves_to_the_task_written_out_in_full():
    shared = documents(EXAMPLES / "bfcl-shared.yaml")
    config = taskconfigs.from_body(shared[0])
    assert config.settings is not None
    team_a, team_b = (spec.parse_spec(d["spec"]) for d in shared[1:])
    full = spec.parse_spec(documents(EXAMPLES / "bfcl.yaml")[1]["spec"])

    resolved = taskconfigs.merge(team_a.tasks[0], config.settings)
    written = full.tasks[0]
    # The same task, so the same result: with the same model and parameters, a reuse.
    model = full.models[0]
    assert naming.fingerprint(full, model, resolved) == naming.fingerprint(full, model, written)

    overridden = taskconfigs.merge(team_b.tasks[0], config.settings)
    assert [(e.name, e.value) for e in overridden.env] == [("MODEL_NAME", "qwen3-8b")]
    assert overridden.timeout_seconds == 3600
    assert overridden.args == written.args and overridden.image == written.image
