"""End to end: the operator as a process against the real control plane and node.

Every assertion reads the API. Each test has its own namespace and its own model services
(real HTTP servers on the host, where the node's pods reach it, that check the injected
auth header).
"""

from __future__ import annotations

import itertools
import threading
import time
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support import (
    BASE_IMAGE,
    BASE_VERSION,
    PROGRESS_INTERVAL,
    TASKS,
    TOKEN,
    model,
    task,
    wait_for,
)

pytestmark = pytest.mark.e2e


def test_two_models_three_tasks_run_serially_per_model(api, models):
    m1, m2 = models[:2]
    tasks = [task(t, score=i / 10) for i, t in enumerate(TASKS[:3])]
    api.create_evaltask(
        "serial", {"models": [model("m1", m1.url), model("m2", m2.url)], "tasks": tasks}
    )
    status = api.wait_phase("serial", ("Succeeded", "Failed"))
    assert status["phase"] == "Succeeded", status
    assert status["progress"] == "6/6"
    assert (status["total"], status["completed"], status["succeeded"]) == (6, 6, 6)
    for m in ("m1", "m2"):
        runs = [api.run("serial", m, t) for t in TASKS[:3]]
        for i, run in enumerate(runs):
            metrics = run["metrics"]
            assert metrics["score"] == i / 10
            assert metrics["answered"] == 1.0, "the model saw the injected auth header"
        # One at a time, in task order: each run started after the previous finished.
        for before, after in itertools.pairwise(runs):
            assert before["metrics"]["finished_at"] <= after["metrics"]["started_at"]
            assert before["completionTime"] <= after["startTime"]
    assert m1.unauthorized == m2.unauthorized == 0
    assert m1.requests == m2.requests == 3
    # Pod start/finish times agree (second resolution, so <=).
    for m in ("m1", "m2"):
        windows = sorted(
            (
                _task_window(p)
                for p in api.pods()
                if p.metadata.labels.get("evaloperator.io/model") == m
            ),
            key=lambda w: w[0],
        )
        assert [w[2] for w in windows] == list(TASKS[:3])
        for (_, end, _), (start, _, _) in itertools.pairwise(windows):
            assert end <= start
    board = status["leaderboard"]
    assert [e["tasks"] for e in board] == [3, 3]
    assert board[0]["score"] == pytest.approx((0 + 0.1 + 0.2) / 3)


def _task_window(pod):
    [state] = [s.state.terminated for s in pod.status.init_container_statuses if s.name == "task"]
    return state.started_at, state.finished_at, pod.metadata.labels["evaloperator.io/task"]


def test_failures_say_why_and_the_others_go_on(api, models):
    m1 = models[0]
    tasks = [
        task("alpha", 0.1),
        task("beta", 0.2, EXIT_CODE=3),
        task("gamma", 0.3, MALFORMED='{"metrics": [{"name": "acc", "value": "high"}]}'),
        task("delta", 0.4),
    ]
    api.create_evaltask("failing", {"models": [model("m1", m1.url)], "tasks": tasks})
    status = api.wait_phase("failing", ("Succeeded", "Failed"))
    assert status["phase"] == "Failed"
    assert (status["succeeded"], status["failed"], status["progress"]) == (2, 2, "4/4")
    beta = api.run("failing", "m1", "beta")
    assert beta["state"] == "Failed"
    assert "the task container exited with code 3" in beta["message"]
    assert "ValueError: no such split" in beta["message"]
    gamma = api.run("failing", "m1", "gamma")
    assert gamma["state"] == "Failed"
    assert "metrics[0].value ('acc') is a str" in gamma["message"]
    assert api.run("failing", "m1", "delta")["metrics"]["score"] == 0.4
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "RunsFailed"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            lambda s: s["models"][0]["auth"].update(value="inline"),
            "exactly one of auth.secretRef or auth.value",
            id="both auth sources",
        ),
        pytest.param(
            lambda s: s["tasks"][0]["env"].append({"name": "EVAL_MODEL_NAME", "value": "x"}),
            "env sets a reserved name",
            id="a reserved env name",
        ),
        pytest.param(
            lambda s: s["models"].append(dict(s["models"][0])),
            "Duplicate value",
            id="duplicate model names",
        ),
        pytest.param(
            lambda s: s["tasks"][0].update(name="Not_A_Label"),
            "spec.tasks[0].name",
            id="a task name that is no DNS label",
        ),
        pytest.param(lambda s: s.pop("models"), "spec.models: Required value", id="no models"),
    ],
)
def test_the_api_server_rejects_what_the_crd_can_express(api, models, mutate, expected):
    spec = {"models": [model("m1", models[0].url)], "tasks": [task("alpha", 1)]}
    mutate(spec)
    with pytest.raises(ApiException) as e:
        api.create_evaltask("rejected", spec)
    assert e.value.status == 422
    assert expected in e.value.body


@pytest.mark.parametrize(
    ("mutate", "reason", "field"),
    [
        pytest.param(
            lambda s: s["tasks"][0].update(
                mounts=[
                    {
                        "name": "data",
                        "mountPath": "/data",
                        "source": {"hostPath": {"type": "Directory"}},
                    }
                ]
            ),
            "JobRejected",
            "spec.tasks[0].mounts[0]",
            id="a volume the API server's dry-run rejects",
        ),
    ],
)
def test_what_only_the_operator_can_tell(api, models, mutate, reason, field):
    spec = {"models": [model("m1", models[0].url)], "tasks": [task("alpha", 1)]}
    mutate(spec)
    api.create_evaltask("invalid", spec)
    status = api.wait_phase("invalid", ("Failed",), timeout=30)
    valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", reason)
    assert valid["message"].startswith(field)
    assert api.jobs() == []
    events = client.CoreV1Api(api.core.api_client).list_namespaced_event(api.ns).items
    assert any(e.reason == reason and e.type == "Warning" for e in events)


def test_a_secret_applied_after_its_evaltask_is_waited_for_and_then_runs(api, models):
    spec = {"models": [model("m1", models[0].url, secret="late-key")], "tasks": [task("a", 1)]}
    api.create_evaltask("late", spec)

    def waiting():
        conds = api.status("late").get("conditions") or []
        found = [c for c in conds if c["type"] == "ReadyToStart" and c["status"] == "False"]
        return found[0] if found else None

    ready = wait_for(waiting, 30, "ReadyToStart=False")
    assert ready["reason"] == "SecretNotFound"
    assert "late-key" in ready["message"]
    assert api.status("late")["phase"] == "Pending", "a wait, not a failure"
    assert api.jobs() == []
    time.sleep(10)  # applied a while after the EvalTask, as a GitOps sync may do
    api.secret("late-key", {"token": TOKEN})
    status = api.wait_phase("late", ("Succeeded",), timeout=120)
    assert status["progress"] == "1/1"


def test_a_killed_operator_neither_duplicates_nor_loses(cluster, api, models):
    m1, m2 = models[:2]
    tasks = [task(t, 0.5, SLEEP=1) for t in TASKS[:3]]
    api.create_evaltask(
        "crash", {"models": [model("m1", m1.url), model("m2", m2.url)], "tasks": tasks}
    )
    wait_for(lambda: len(api.jobs()) >= 2, 30, "the first Jobs")
    seen: dict[str, str] = {}

    def record():
        for job in api.jobs():
            seen.setdefault(job.metadata.name, job.metadata.uid)
            assert seen[job.metadata.name] == job.metadata.uid, "a Job was recreated"

    record()
    cluster.stop_operator(kill=True)
    time.sleep(3)  # runs finish while nobody watches
    record()
    cluster.start_operator()
    status = api.wait_phase("crash", ("Succeeded", "Failed"))
    record()
    assert status["phase"] == "Succeeded"
    assert len(api.jobs()) == 6 and len(seen) == 6
    for job in api.jobs():
        assert job.status.succeeded == 1 and not job.status.failed
    assert m1.requests == m2.requests == 3, "no run ran twice"


def test_deleting_the_evaltask_deletes_its_jobs_and_pods(api, models):
    api.create_evaltask(
        "doomed", {"models": [model("m1", models[0].url)], "tasks": [task("alpha", 1, SLEEP=30)]}
    )
    wait_for(lambda: api.pods(), 30, "the first pod")
    api.custom.delete_namespaced_custom_object(
        "evaloperator.io", "v1alpha1", api.ns, "evaltasks", "doomed"
    )
    wait_for(lambda: not api.jobs() and not api.pods(), 60, "Jobs and pods to be deleted")


def test_suspend_and_resume(api, models):
    api.create_evaltask(
        "pausable",
        {"models": [model("m1", models[0].url)], "tasks": [task(t, 1, SLEEP=2) for t in TASKS[:2]]},
    )
    wait_for(
        lambda: any(
            p.status.phase in ("Pending", "Running") and p.spec.node_name for p in api.pods()
        ),
        30,
        "the first pod to run",
    )
    api.patch_spec("pausable", {"suspend": True})
    status = api.wait_phase("pausable", ("Suspended",), timeout=30)
    [job] = api.jobs()
    assert job.spec.suspend is True
    assert job.metadata.annotations["evaloperator.io/suspended-by-operator"] == "true"
    wait_for(
        lambda: not [p for p in api.pods() if p.status.phase in ("Pending", "Running")],
        30,
        "the suspended Job's pod to stop",
    )
    # A pass made after the pod stopped: an edit that runs nothing (a weight) is a new
    # generation, which the operator must judge before wait_phase returns.
    weighted = [{**t, "weight": 2} for t in api.evaltask("pausable")["spec"]["tasks"]]
    api.patch_spec("pausable", {"tasks": weighted})
    status = api.wait_phase("pausable", ("Suspended",), timeout=30)
    assert len(api.jobs()) == 1, "no new Job while suspended"
    assert status["completed"] == 0
    api.patch_spec("pausable", {"suspend": False})
    status = api.wait_phase("pausable", ("Succeeded",), timeout=90)
    assert status["progress"] == "2/2"
    assert all(not j.spec.suspend for j in api.jobs())


def test_editing_one_tasks_args_reruns_only_its_runs(api, models):
    m1, m2 = models[:2]
    spec = {
        "models": [model("m1", m1.url), model("m2", m2.url)],
        "tasks": [task(t, 0.1) for t in TASKS[:3]],
    }
    api.create_evaltask("edited", spec)
    api.wait_phase("edited", ("Succeeded",))
    before = {j.metadata.name: j.metadata.uid for j in api.jobs()}
    spec["tasks"][1] = task("beta", 0.9)
    api.patch_spec("edited", {"tasks": spec["tasks"]})
    api.wait_phase("edited", ("Succeeded",))
    after = {j.metadata.name: j.metadata.uid for j in api.jobs()}
    kept = {n: u for n, u in after.items() if n in before}
    assert kept == {n: u for n, u in before.items() if "-beta-" not in n}
    assert len([n for n in after if n not in before]) == 2
    for m in ("m1", "m2"):
        assert api.run("edited", m, "beta")["metrics"]["score"] == 0.9
        assert api.run("edited", m, "alpha")["metrics"]["score"] == 0.1
    assert m1.requests == m2.requests == 4


BFCL_SCRIPTS = {
    "run.sh": """TEST_CATEGORY="simple_python"
export MODEL_NAME=$MODEL_NAME
export OPENAI_BASE_URL=${EVAL_INFERENCE_URL%/chat/completions}
export OPENAI_API_KEY="${EVAL_AUTHORIZATION_HEADER_VALUE#Bearer* }"
mkdir -p result/$MODEL_NAME
python - <<'EOF' > result/$MODEL_NAME/answers.json
import json, os, urllib.request
request = urllib.request.Request(
    os.environ["OPENAI_BASE_URL"] + "/chat/completions",
    json.dumps({"model": os.environ["MODEL_NAME"],
                "messages": [{"role": "user", "content": "alpha"}]}).encode(),
    {"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
     "Content-Type": "application/json"})
print(json.dumps(json.load(urllib.request.urlopen(request, timeout=10))))
EOF
""",
    "evaluate.sh": """TEST_CATEGORY="simple_python"
export MODEL_NAME=$MODEL_NAME
mkdir -p score/$MODEL_NAME/non_live
python - <<'EOF'
import json, os
answers = json.load(open(f"result/{os.environ['MODEL_NAME']}/answers.json"))
right = answers["choices"][0]["message"]["content"] == "right"
path = f"score/{os.environ['MODEL_NAME']}/non_live/BFCL_v4_simple_python_score.json"
with open(path, "w") as f:
    f.write(json.dumps({"accuracy": 0.75 if right else 0.0, "total_count": 400}) + "\\n")
EOF
""",
    "save_metric.py": """import json
import os

output_dir = os.getenv("EVAL_OUTPUT_DIR")
model_name = os.getenv("MODEL_NAME")
original_result_file = os.path.join(
    "score", model_name, "non_live", "BFCL_v4_simple_python_score.json")
with open(original_result_file) as f:
    first_line = f.readline().strip()
    original_result = json.loads(first_line)
result = {"metrics": [{"name": "accuracy", "value": original_result["accuracy"]}]}
result_file = os.path.join(output_dir, "metrics.json")
with open(result_file, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2, ensure_ascii=False)
""",
}


def test_the_bfcl_style_example(api, models):
    api.configmap("bfcl-scripts", BFCL_SCRIPTS)
    api.create_evaltask(
        "bfcl-deepseek",
        {
            "models": [model("deepseek-v3-2", models[0].url)],
            "tasks": [
                {
                    "name": "bfcl-v4-simple-python",
                    # The product documents' image carries bash and python; so does ours.
                    "image": BASE_IMAGE,
                    "version": BASE_VERSION,
                    "command": ["bash", "-c"],
                    "args": [
                        "mkdir -p $EVAL_OUTPUT_DIR/work && cd $EVAL_OUTPUT_DIR/work && "
                        "bash /scripts/run.sh && bash /scripts/evaluate.sh && "
                        "python /scripts/save_metric.py"
                    ],
                    "env": [{"name": "MODEL_NAME", "value": "deepseek-v3.2"}],
                    "mounts": [
                        {
                            "name": "scripts",
                            "mountPath": "/scripts",
                            "readOnly": True,
                            "source": {"configMap": {"name": "bfcl-scripts"}},
                        }
                    ],
                    "primaryMetric": "accuracy",
                }
            ],
            "parameters": {"MAX_CONCURRENCY": "24", "MAX_RETRY_PER_QUERY": "0"},
        },
    )
    status = api.wait_phase("bfcl-deepseek", ("Succeeded", "Failed"))
    assert status["phase"] == "Succeeded", status
    [run] = api.runs("bfcl-deepseek")
    assert run["metrics"] == {"accuracy": 0.75}
    assert status["leaderboard"] == [
        {"model": "deepseek-v3-2", "score": 0.75, "rank": 1, "tasks": 1}
    ]
    assert models[0].unauthorized == 0


def test_parallelism_one_runs_one_job_at_a_time(api, models):
    most = {"active": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            active = [j for j in api.jobs() if (j.status.active or 0) > 0]
            most["active"] = max(most["active"], len(active))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        api.create_evaltask(
            "one-at-a-time",
            {
                "models": [model(f"m{i}", m.url) for i, m in enumerate(models, 1)],
                "tasks": [task("alpha", 1, SLEEP=0.5)],
                "parallelism": 1,
            },
        )
        api.wait_phase("one-at-a-time", ("Succeeded",))
    finally:
        stop.set()
        watcher.join()
    assert most["active"] == 1
    windows = sorted(
        (r["metrics"]["started_at"], r["metrics"]["finished_at"]) for r in api.runs("one-at-a-time")
    )
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert end <= start, "two runs overlapped"


def operator_metric(cluster, name: str, **labels: str) -> float | None:
    """One sample of the session operator's /metrics (None when it has none)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics").read()
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def test_a_running_runs_evalrun_shows_the_progress_its_log_tells(api, models, cluster):
    """The task prints `EVAL_PROGRESS done=3 total=10` and runs on for RUNNING seconds: its
    EvalRun shows the progress while it runs, a gauge exports it, the EvalTask's progress
    stays run-level, and the operator reads the log at most once per interval."""
    running = 16.0
    reads = "eval_operator_progress_log_reads_total"
    before = operator_metric(cluster, reads) or 0.0
    api.create_evaltask(
        "progress",
        {
            "models": [model("m1", models[0].url)],
            "tasks": [task("alpha", 1, SLEEP=running, PROGRESS="3/10")],
        },
    )
    shown = wait_for(lambda: (api.runs("progress") or [{}])[0].get("progress"), 30, "progress")
    seen_at = time.monotonic()
    assert (shown["done"], shown["total"]) == (3, 10), shown
    assert shown["updateTime"].endswith("Z")
    assert api.status("progress")["progress"] == "0/1", "the EvalTask's progress is run-level"
    gauge = {"evaltask": "progress", "model": "m1", "task": "alpha", "namespace": api.ns}
    ratio = wait_for(
        lambda: operator_metric(cluster, "eval_operator_run_progress_ratio", **gauge),
        10,
        "the run's progress gauge",
    )
    assert ratio == 0.3
    # Another read of the log, the same count: the EvalRun is not written again.
    so_far = operator_metric(cluster, reads) or 0.0
    wait_for(lambda: (operator_metric(cluster, reads) or 0.0) > so_far, 20, "another log read")
    assert api.run("progress", "m1", "alpha")["progress"] == shown
    status = api.wait_phase("progress", ("Succeeded",), timeout=60)
    window = time.monotonic() - seen_at
    assert status["progress"] == "1/1"
    assert api.run("progress", "m1", "alpha").get("progress") is None, "a finished run has none"
    assert operator_metric(cluster, "eval_operator_run_progress_ratio", **gauge) is None
    made = (operator_metric(cluster, reads) or 0.0) - before
    # At most one read per interval while it ran (plus the first one, before `seen_at`).
    assert 1 <= made <= window / PROGRESS_INTERVAL + 2, (made, window)
    print(f"progress_log_reads_per_running_run_per_minute={made * 60 / running:.1f}")
