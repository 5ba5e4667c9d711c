"""End to end: saved task configurations on the real cluster. A ClusterEvalTaskConfig serves
EvalTasks in two namespaces; an edit between them changes only the runs created after it;
a namespace's missing EvalTaskConfig is a wait that its creation ends."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.e2e.support import (
    BASE_IMAGE,
    GROUP,
    TASK_SCRIPT,
    TOKEN,
    VERSION,
    kubectl_eval,
    model,
    namespace,
    task,
    wait_for,
)

pytestmark = pytest.mark.e2e
CLUSTER_PLURAL = "clusterevaltaskconfigs"


def condition(api, name: str, kind: str) -> dict[str, Any] | None:
    conds = api.status(name).get("conditions") or []
    return next((c for c in conds if c["type"] == kind), None)


def test_a_cluster_config_serves_two_namespaces_and_an_edit_spares_created_runs(
    api, api_client, models, cluster
):
    shared = f"qa-{uuid.uuid4().hex[:8]}"  # cluster-scoped: unique to this run
    settings = {k: v for k, v in task("alpha", 0.7).items() if k != "name"}
    api.create_task_config(shared, settings, cluster=True)
    try:
        ref = {"name": "alpha", "configRef": {"name": shared, "kind": "ClusterEvalTaskConfig"}}
        api.create_evaltask("first", {"models": [model("m1", models[0].url)], "tasks": [ref]})
        api.wait_phase("first", ("Succeeded",), timeout=120)
        before = api.run("first", "m1", "alpha")
        config = api.custom.get_cluster_custom_object(GROUP, VERSION, CLUSTER_PLURAL, shared)
        assert before["configRef"] == {
            "kind": "ClusterEvalTaskConfig",
            "name": shared,
            "resourceVersion": config["metadata"]["resourceVersion"],
        }
        assert before["taskConfig"]["command"] == settings["command"]
        assert before["metrics"]["score"] == 0.7

        # A fix to the set's command: it now scores 0.3.
        fixed = TASK_SCRIPT.replace('float(os.environ["SCORE"])', "0.3")
        assert fixed != TASK_SCRIPT
        api.custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            CLUSTER_PLURAL,
            shared,
            {"spec": {"command": ["python", "-c", fixed]}},
        )

        with namespace(api_client, TOKEN) as other:
            local = {"name": "beta", "configRef": {"name": "local"}}  # kind: EvalTaskConfig
            other.create_evaltask(
                "second",
                {
                    "models": [model("m1", models[0].url)],
                    "tasks": [{**ref, "timeoutSeconds": 90}, local],
                },
            )
            waiting = wait_for(
                lambda: (
                    (c := condition(other, "second", "SpecValid"))
                    and c["reason"] == "TaskConfigNotFound"
                    and c
                ),
                60,
                "second to wait for its EvalTaskConfig",
            )
            assert waiting["status"] == "Unknown"
            ready = condition(other, "second", "ReadyToStart")
            assert (ready["status"], ready["reason"]) == ("False", "TaskConfigNotFound")
            assert "spec.tasks[1].configRef: EvalTaskConfig 'local'" in ready["message"]

            other.create_task_config(
                "local", {k: v for k, v in task("beta", 0.5).items() if k != "name"}
            )
            listed = kubectl_eval(cluster, "-n", other.ns, "configs").stdout.splitlines()
            assert listed[0].split() == ["KIND", "NAME", "IMAGE", "VERSION", "AGE"]
            assert listed[1].split()[:2] == ["EvalTaskConfig", "local"], "the namespace's first"
            assert ["ClusterEvalTaskConfig", shared] in [line.split()[:2] for line in listed[2:]]

            other.wait_phase("second", ("Succeeded",), timeout=180)
            after = other.run("second", "m1", "alpha")
            assert after["taskConfig"]["command"] == ["python", "-c", fixed]
            assert after["taskConfig"]["timeoutSeconds"] == 90, "the entry's override wins"
            assert after["metrics"]["score"] == 0.3
            assert after["configRef"]["resourceVersion"] != before["configRef"]["resourceVersion"]
            assert other.run("second", "m1", "beta")["metrics"]["score"] == 0.5
            assert condition(other, "second", "SpecValid")["status"] == "True"

        # The edit triggered a pass over `first` (it references the config): its run is
        # the same EvalRun, with the old command, and no Job ran again.
        kept = api.run("first", "m1", "alpha")
        assert kept["uid"] == before["uid"]
        assert kept["taskConfig"]["command"] == settings["command"]
        assert kept["configRef"] == before["configRef"]
        assert kept["metrics"]["score"] == 0.7
        assert len(api.runs("first")) == 1
        assert api.status("first")["phase"] == "Succeeded"
    finally:
        api.custom.delete_cluster_custom_object(GROUP, VERSION, CLUSTER_PLURAL, shared)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(
            {"image": BASE_IMAGE},
            "spec.tasks[0].image: Invalid value",
            id="image-next-to-a-configref",
        ),
        pytest.param(
            {"command": ["sh"]}, "spec.tasks[0].command", id="command-next-to-a-configref"
        ),
        pytest.param(
            {"configRef": {"name": "set", "kind": "Elsewhere"}},
            "spec.tasks[0].configRef.kind: Unsupported value",
            id="unknown-kind",
        ),
    ],
)
def test_the_api_server_refuses_what_a_configref_entry_may_not_say(api, models, entry, expected):
    written = {"name": "alpha", "configRef": {"name": "set"}, **entry}
    spec = {"models": [model("m1", models[0].url)], "tasks": [written]}
    with pytest.raises(ApiException) as e:
        api.create_evaltask("refused", spec)
    assert e.value.status == 422
    assert expected in e.value.body


def test_the_api_server_refuses_a_config_without_an_image(api):
    with pytest.raises(ApiException) as e:
        api.create_task_config("no-image", {"command": ["sh"]})
    assert e.value.status == 422
    assert "spec.image: Required value" in e.value.body
