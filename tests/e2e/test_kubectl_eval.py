"""End to end: `kubectl eval` (kubectl-eval on PATH) against the local cluster, through the
real kubectl, with the kubeconfig in KUBECONFIG as a user would have it."""

from __future__ import annotations

import json

import pytest

from tests.e2e.support import kubectl_eval, model, task, wait_for

pytestmark = pytest.mark.e2e


def evalrun_uid(api, model_name: str, task_name: str) -> str | None:
    found = [r for r in api.runs("cli") if r["model"] == model_name and r["task"] == task_name]
    return found[0]["uid"] if found and found[0]["state"] in ("Succeeded", "Failed") else None


def test_kubectl_eval_reads_and_reruns_an_evaltask(api, models, cluster):
    api.create_evaltask(
        "cli",
        {
            "models": [model("m1", models[0].url), model("m2", models[1].url)],
            "tasks": [task("alpha", 0.7), task("beta", 0.4, EXIT_CODE=1)],
        },
    )
    api.wait_phase("cli", ("Failed",), timeout=120)
    ns = ("-n", api.ns)

    table = kubectl_eval(cluster, *ns, "results", "cli").stdout.splitlines()
    assert table[0] == "cli: Failed, 4/4 runs finished"
    assert table[2].split() == ["MODEL", "ALPHA", "BETA"]
    assert table[3].split() == ["m1", "0.7", "Failed"]
    assert table[6].split() == ["RANK", "MODEL", "SCORE", "TASKS"]
    assert sorted(line.split() for line in table[7:9]) == [
        ["1", "m1", "0.7", "1"],
        ["1", "m2", "0.7", "1"],
    ], "equal scores share a rank"

    # -n also after the command, as kubectl takes it.
    assert kubectl_eval(cluster, "results", "cli", "-n", api.ns).stdout.splitlines() == table
    doc = json.loads(kubectl_eval(cluster, *ns, "results", "cli", "-o", "json").stdout)
    by_run = {(r["model"], r["task"]): r for r in doc["runs"]}
    assert by_run[("m2", "alpha")]["metrics"]["score"] == 0.7
    assert "no such split" in by_run[("m2", "beta")]["message"]
    assert api.run("cli", "m2", "alpha")["name"] == by_run[("m2", "alpha")]["evalrun"]
    header = kubectl_eval(cluster, *ns, "results", "cli", "-o", "csv").stdout.splitlines()[0]
    assert header.startswith("model,task,state,score,score,answered")

    log = kubectl_eval(cluster, *ns, "logs", "cli", "m1", "alpha").stdout
    assert "answer: right" in log, "the task container's own output"
    compared = kubectl_eval(cluster, *ns, "compare", "cli", "cli").stdout.splitlines()
    assert compared[0].split()[:3] == ["MODEL", "CLI/ALPHA", "CLI/BETA"]

    # Errors name what is wrong and exit 1.
    missing = kubectl_eval(cluster, *ns, "results", "nope", check=False)
    assert missing.returncode == 1
    assert f'evaltask "nope" not found in namespace {api.ns}' in missing.stderr
    wrong = kubectl_eval(cluster, *ns, "logs", "cli", "m9", "alpha", check=False)
    assert wrong.returncode == 1 and 'no run of model "m9"' in wrong.stderr
    no_context = kubectl_eval(cluster, "--context", "elsewhere", "results", "cli", check=False)
    assert no_context.returncode == 1 and "elsewhere" in no_context.stderr

    # One run again: its EvalRun is replaced; the others stay.
    before = {k: evalrun_uid(api, *k) for k in [("m1", "alpha"), ("m1", "beta")]}
    kubectl_eval(cluster, *ns, "rerun", "cli", "m1", "alpha")
    wait_for(
        lambda: evalrun_uid(api, "m1", "alpha") not in (None, before[("m1", "alpha")]),
        60,
        "m1/alpha to run again",
    )
    assert evalrun_uid(api, "m1", "beta") == before[("m1", "beta")]
    # The failed runs again.
    kubectl_eval(cluster, *ns, "rerun", "cli", "--failed")
    wait_for(
        lambda: evalrun_uid(api, "m1", "beta") not in (None, before[("m1", "beta")]),
        60,
        "m1/beta to run again",
    )
    assert api.wait_phase("cli", ("Failed",), timeout=60)["progress"] == "4/4"
