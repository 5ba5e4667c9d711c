"""Saved task configurations: what a tasks[] entry with a configRef may say, how it
resolves against its config, and which task a run keeps."""

from __future__ import annotations

import pytest

from eval_operator import constants, crd, naming, plan, spec, taskconfigs

CONFIG = {
    "image": "evals/bfcl",
    "version": "v4",
    "command": ["python", "-m", "bfcl"],
    "args": ["--category", "simple"],
    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
    "mounts": [
        {
            "name": "data",
            "mountPath": "/data",
            "source": {"persistentVolumeClaim": {"claimName": "d"}},
        }
    ],
    "timeoutSeconds": 600,
    "retries": 2,
    "primaryMetric": "accuracy",
    "weight": 2,
}
REF = {"name": "bfcl", "kind": "ClusterEvalTaskConfig"}


def resolve(config=CONFIG, **entry):
    written = spec.TaskConfig.model_validate({"name": "t", "configRef": REF, **entry})
    return taskconfigs.merge(written, spec.TaskSettings.model_validate(config))


def dumped(task):
    return task.model_dump(by_alias=True, exclude_none=True, exclude={"config_ref"})


@pytest.mark.parametrize(
    ("entry", "changed"),
    [
        ({}, {}),
        ({"version": "v5"}, {"version": "v5"}),
        ({"args": ["--category", "multiple"]}, {"args": ["--category", "multiple"]}),
        ({"args": []}, {"args": []}),
        ({"timeoutSeconds": 60}, {"timeoutSeconds": 60}),
        ({"weight": 0}, {"weight": 0.0}),
        (
            # Merged by name: B keeps its place with the entry's value, C follows.
            {"env": [{"name": "C", "value": "3"}, {"name": "B", "value": "two"}]},
            {
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "B", "value": "two"},
                    {"name": "C", "value": "3"},
                ]
            },
        ),
        (
            {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
            {
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "B", "value": "2"},
                ]
            },
        ),
    ],
)
def test_an_entry_resolves_to_its_config_with_its_overrides(entry, changed):
    expected = dumped(spec.TaskConfig.model_validate({"name": "t", **CONFIG})) | changed
    assert dumped(resolve(**entry)) == expected


def test_the_config_gives_everything_the_entry_does_not_say_and_the_entry_its_name():
    task = resolve(config={"image": "evals/x:1"})
    assert (task.name, task.image_ref, task.command, task.weight) == ("t", "evals/x:1", None, 1.0)
    assert task.config_ref is None, "a resolved task is a task in full"


def test_a_version_next_to_a_config_image_that_names_its_tag_is_refused_by_name():
    with pytest.raises(taskconfigs.ResolveError, match="names its tag"):
        resolve(config={"image": "evals/x:1"}, version="v2")


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"image": "evals/x"}, "image"),
        ({"command": ["x"]}, "command"),
        ({"mounts": []}, "mounts"),
        ({"resources": {}}, "resources"),
        ({"retries": 1}, "retries"),
        ({"results": {"format": "bfcl"}}, "results"),
        ({"primaryMetric": "f1"}, "primaryMetric"),
        ({"metricWeights": {"f1": 1}}, "metricWeights"),
    ],
)
def test_with_a_configref_only_the_overrides_may_be_written(entry, field):
    raw = {
        "models": [{"name": "m", "url": "http://m/v1"}],
        "tasks": [{"name": "t", "configRef": REF, **entry}],
    }
    with pytest.raises(spec.SpecInvalid) as e:
        spec.parse_spec(raw)
    [problem] = e.value.problems
    assert problem.field == "spec.tasks[0]" and problem.message.startswith(field), problem


def test_a_task_without_image_or_configref_is_refused():
    raw = {"models": [{"name": "m", "url": "http://m/v1"}], "tasks": [{"name": "t"}]}
    with pytest.raises(spec.SpecInvalid, match="image is required"):
        spec.parse_spec(raw)


def test_the_crd_says_the_same_rules_with_the_field_in_each_message():
    tasks = crd.build("evaltask")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    entry = tasks["properties"]["spec"]["properties"]["tasks"]["items"]
    rules = {
        r["fieldPath"]: r for r in entry["x-kubernetes-validations"] if "configRef" in r["rule"]
    }
    assert set(rules) == {
        ".image",
        ".command",
        ".mounts",
        ".resources",
        ".retries",
        ".results",
        ".primaryMetric",
        ".metricWeights",
    }
    for path, rule in rules.items():
        assert path[1:] in rule["message"]
    assert "image" not in entry["required"]
    assert entry["properties"]["configRef"]["properties"]["kind"]["enum"] == [
        constants.TASK_CONFIG.kind,
        constants.CLUSTER_TASK_CONFIG.kind,
    ]


@pytest.mark.parametrize(
    ("which", "kind", "scope", "short"),
    [
        ("evaltaskconfig", "EvalTaskConfig", "Namespaced", "etc"),
        ("clusterevaltaskconfig", "ClusterEvalTaskConfig", "Cluster", "cetc"),
    ],
)
def test_the_config_kinds_hold_a_task_but_its_name_and_print_image_version_age(
    which, kind, scope, short
):
    body = crd.build(which)["spec"]
    assert (body["names"]["kind"], body["scope"], body["names"]["shortNames"]) == (
        kind,
        scope,
        [short],
    )
    [version] = body["versions"]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Image", "Version", "Age"]
    assert "subresources" not in version, "a config has no status"
    config = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    entry = crd.model_schema(spec.TaskConfig)
    assert set(config["properties"]) == set(entry["properties"]) - {"name", "configRef"}
    assert config["required"] == ["image"]


MODEL = {"name": "m", "url": "http://m/v1"}


def evalspec(**entry):
    return spec.parse_spec({"models": [MODEL], "tasks": [{"name": "t", "configRef": REF, **entry}]})


def found(config, version="1"):
    settings = spec.TaskSettings.model_validate(config)
    return lambda ref: taskconfigs.Found(ref.kind, ref.name, version, settings)


def created(run):
    """The EvalRun reconcile creates for a desired run, as the API server returns it."""
    return {"metadata": {"name": run.name}, "spec": {"model": "m", "task": "t", **run.resolved()}}


def test_the_reuse_fingerprint_is_the_resolved_tasks_the_same_as_written_in_full():
    [run] = plan.desired_runs(evalspec(), "et", found(CONFIG))
    inline = spec.parse_spec({"models": [MODEL], "tasks": [{"name": "t", **CONFIG}]})
    assert run.fingerprint == naming.fingerprint(inline, inline.models[0], inline.tasks[0])
    assert run.source is not None and run.source.resource_version == "1"


def test_a_created_run_keeps_its_task_until_its_entry_changes():
    [run] = plan.desired_runs(evalspec(), "et", found(CONFIG))
    edited = found({**CONFIG, "command": ["v2"]}, version="2")
    [kept] = plan.desired_runs(evalspec(), "et", edited, [created(run)])
    assert (kept.name, kept.task, kept.source) == (run.name, run.task, run.source)
    [fresh] = plan.desired_runs(evalspec(), "et", edited)
    assert fresh.task.command == ["v2"] and fresh.name != run.name
    [rewritten] = plan.desired_runs(evalspec(version="v9"), "et", edited, [created(run)])
    assert rewritten.task.command == ["v2"] and rewritten.task.version == "v9"
    # Weight is no part of the entry's identity: the kept run takes the entry's new one.
    [weighed] = plan.desired_runs(evalspec(weight=5), "et", edited, [created(run)])
    assert (weighed.name, weighed.task.weight, weighed.task.command) == (
        run.name,
        5.0,
        CONFIG["command"],
    )


def test_a_missing_config_is_a_waiting_run_with_nothing_resolved():
    [run] = plan.desired_runs(evalspec(), "et", lambda ref: None)
    assert run.waiting == "ClusterEvalTaskConfig 'bfcl' not found"
    assert run.source is None and run.resolved() is None
