"""`python -m localkube up|demo`: a local cluster with the operator, for people.

Both run the real node: kubelet and containerd run the pods, from our own images (built
and cached on first use).

up    start the control plane, the node and the operator, write the kubeconfig to
      <state>/kubeconfig, say which images the node has and where pods reach the host, and
      keep running until SIGTERM/SIGINT (`make down` sends it).
demo  bring everything up in a temporary folder, start two mock model services on the
      host, apply examples/demo.yaml, show progress, print the results, stop everything.
demo-real
      the same with examples/real.yaml: lm-eval and BFCL images (examples/images) on
      SmolLM2-135M-Instruct served by llama.cpp; also prints the tools' own score lines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eval_runner import config, samples
from localkube import images, llama, realnode
from localkube.cluster import ROOT, LocalCluster, load_documents
from localkube.mockmodel import MockModel

DEMO_FILE = ROOT / "examples" / "demo.yaml"
REAL_FILE = ROOT / "examples" / "real.yaml"
# The lines in which lm-eval (its results table) and BFCL (its checker) report a score.
TOOL_LINE = re.compile(r"^\|[^|]*\|\s*[\d.]*\|[^|]*\|\s*\d+\|[^|]*\||Accuracy: ")
DEMO_NAMESPACE = "demo"
DEMO_MODELS = {"small-model": (0.55, 18431), "large-model": (0.9, 18432)}


def up(state: Path, network: realnode.Network = realnode.FIRST) -> int:
    shutil.rmtree(state / "cluster", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    stop = False
    ready = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        if not ready:
            # While it starts: give up starting now (start() then stops what it began)
            # rather than finish a start nobody wants.
            raise SystemExit(128 + signum)
        stop = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    cluster = LocalCluster(state / "cluster", network=network)
    try:
        cluster.start()
        shutil.copy(cluster.kubeconfig, state / "kubeconfig")
        assert cluster.kubelet is not None
        print("images on the node (use them in an EvalTask):", flush=True)
        for name in cluster.kubelet.image_names():
            print(f"  {name}", flush=True)
        print(
            "  (eval-operator/runner: the runner and collector; eval-operator/operator: the "
            "operator; eval-operator/base: Debian with bash and python3, for scripts)",
            flush=True,
        )
        print(
            f"pods reach services on this machine at {network.node_ip} "
            "(listen there for model services)",
            flush=True,
        )
        print(f"the node's own files (containerd, kubelet): {cluster.kubelet.dir}", flush=True)
        (state / "ready").write_text("ok\n")
        ready = True
        print(f"export KUBECONFIG={(state / 'kubeconfig').resolve()}", flush=True)
        while not stop:
            time.sleep(0.5)
    finally:
        cluster.stop()
        (state / "ready").unlink(missing_ok=True)
    return 0


def example_docs(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The example's documents, and its EvalTask among them."""
    docs: list[dict[str, Any]] = load_documents(path)  # type: ignore[assignment]
    for doc in docs:
        if doc.get("kind") == "EvalTask":
            return docs, doc
    raise ValueError(f"{path} has no EvalTask")


def answer_key() -> dict[str, str]:
    """Questions and answers of the builtin sets the demo's tasks run, for the mock models."""
    answers: dict[str, str] = {}
    for task in example_docs(DEMO_FILE)[1]["spec"]["tasks"]:
        env = {e["name"]: e.get("value", "") for e in task.get("env", [])}
        for sample in samples.load(env["EVAL_DATASET"], config.Fields()):
            if sample.query is not None and sample.answers:
                answers[sample.query] = sample.answers[0]
    return answers


def get_evalruns(cluster: LocalCluster, name: str) -> list[dict[str, Any]]:
    """The example's EvalRuns."""
    out = cluster.kubectl(
        "get",
        "evalruns",
        "-n",
        DEMO_NAMESPACE,
        "-l",
        f"evaloperator.io/evaltask={name}",
        "-o",
        "json",
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def print_results(evaltask: dict[str, Any], evalruns: list[dict[str, Any]]) -> None:
    """Each run's record (its EvalRun): the score, samples, errors, latency."""
    status = evaltask.get("status") or {}
    tasks = evaltask["spec"]["tasks"]
    primary = {t["name"]: t.get("primaryMetric", "") for t in tasks}
    records = {(r["spec"]["model"], r["spec"]["task"]): r.get("status") or {} for r in evalruns}
    runs = status.get("runs", [])
    wm = 2 + max(len("MODEL"), *(len(r["model"]) for r in runs))
    wt = 2 + max(len("TASK"), *(len(r["task"]) for r in runs))
    wp = 2 + max(len("METRIC"), *(len(m) for m in primary.values()))
    print(f"\nphase={status.get('phase')} progress={status.get('progress')}\n")
    header = (
        f"{'MODEL':<{wm}}{'TASK':<{wt}}{'STATE':<11}{'METRIC':<{wp}}{'SCORE':>6}"
        f"{'SAMPLES':>9}{'ERRORS':>8}{'P95(s)':>8}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        record = records.get((run["model"], run["task"]), {})
        m = {x["name"]: x["value"] for x in record.get("metrics") or []}
        metric = primary.get(run["task"], "")

        def cell(key: str, fmt: str, m: dict[str, float] = m) -> str:
            return format(m[key], fmt) if key in m else "-"

        print(
            f"{run['model']:<{wm}}{run['task']:<{wt}}{run['state']:<11}{metric:<{wp}}"
            f"{cell(metric, '.3f'):>6}{cell('samples', '.0f'):>9}{cell('errors', '.0f'):>8}"
            f"{cell('latency_p95_seconds', '.3f'):>8}"
        )
        if run["state"] == "Failed":
            print(f"    {record.get('message', '')}")
    framework_runs = [
        r
        for r in runs
        if "samples"
        not in {x["name"] for x in records.get((r["model"], r["task"]), {}).get("metrics") or []}
    ]
    if framework_runs:
        print("\nevery metric of the runs whose task is a framework's (no samples/errors)")
        for run in framework_runs:
            record = records.get((run["model"], run["task"]), {})
            values = ", ".join(f"{x['name']}={x['value']:g}" for x in record.get("metrics") or [])
            print(f"  {run['model']}/{run['task']}: {values or '-'}")
    print("\nleaderboard (weighted mean of each task's score)")
    for entry in status.get("leaderboard", []):
        print(
            f"  #{entry['rank']} {entry['model']:<{wm}} {entry['score']:.3f} over "
            f"{entry['tasks']} tasks"
        )


def run_example(cluster: LocalCluster, path: Path, timeout: float, started: float) -> int:
    """Apply the example, show progress until it ends, print its results."""
    _, evaltask = example_docs(path)
    name = evaltask["metadata"]["name"]
    cluster.kubectl("create", "namespace", DEMO_NAMESPACE)
    print(cluster.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(path)).stdout, flush=True)
    last = ""
    deadline = time.monotonic() + timeout
    total = len(evaltask["spec"]["models"]) * len(evaltask["spec"]["tasks"])
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "evaltask", name, "-n", DEMO_NAMESPACE, "-o", "json").stdout
        evaltask = json.loads(out)
        status = evaltask.get("status") or {}
        running = [
            f"{r['model']}/{r['task']}" for r in status.get("runs", []) if r["state"] == "Running"
        ]
        line = (
            f"{status.get('phase', 'Pending'):<10} {status.get('progress', f'0/{total}')}"
            f"  running: {', '.join(running) or '-'}"
        )
        if line != last:
            print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)
            last = line
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    else:
        print("the example did not finish in time", file=sys.stderr)
        print(cluster.operator_log.read_text()[-3000:], file=sys.stderr)
        return 1
    print_results(evaltask, get_evalruns(cluster, name))
    print(f"\n$ kubectl get evalruns -n {DEMO_NAMESPACE}")
    print(cluster.kubectl("get", "evalruns", "-n", DEMO_NAMESPACE).stdout, end="")
    # The plugin as a user runs it: kubectl finds kubectl-eval on PATH (the venv's bin); a
    # plugin gets no flags placed before its name, so the kubeconfig goes in KUBECONFIG.
    print(f"\n$ kubectl eval results {name} -n {DEMO_NAMESPACE}")
    plugin = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "eval", "results", name, "-n", DEMO_NAMESPACE],
        env={
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        capture_output=True,
        text=True,
    )
    print(plugin.stdout + plugin.stderr, end="")
    return 0 if status.get("phase") == "Succeeded" and plugin.returncode == 0 else 1


def demo(timeout: float) -> int:
    answers = answer_key()
    state = Path(tempfile.mkdtemp(prefix="eval-operator-demo-"))
    models: list[MockModel] = []
    started = time.monotonic()
    try:
        print("starting the local control plane, kubelet, containerd and operator ...", flush=True)
        with LocalCluster(state) as cluster:
            # Listening on the node's address, which exists once the node runs.
            models += [
                MockModel.answering(
                    name,
                    answers,
                    accuracy,
                    token="Bearer demo-token",
                    port=port,
                    backlog=64,
                    host=realnode.pod_address_of_host(),
                )
                for name, (accuracy, port) in DEMO_MODELS.items()
            ]
            for model in models:
                model.__enter__()
            print(
                f"  ready in {time.monotonic() - started:.1f}s; model services at "
                + ", ".join(m.url for m in models),
                flush=True,
            )
            code = run_example(cluster, DEMO_FILE, timeout, started)
            print(f"\ndemo finished in {time.monotonic() - started:.1f}s; stopping everything")
            return code
    finally:
        for model in models:
            model.__exit__(None, None, None)
        shutil.rmtree(state, ignore_errors=True)


def demo_real(timeout: float) -> int:
    """examples/real.yaml: lm-eval and BFCL images on SmolLM2 served by llama.cpp."""
    docs, evaltask = example_docs(REAL_FILE)
    url = urlsplit(evaltask["spec"]["models"][0]["url"])
    [secret] = [d for d in docs if d.get("kind") == "Secret"]
    key = secret["stringData"]["token"].removeprefix("Bearer ")
    started = time.monotonic()
    llama.venv()
    built = images.default().examples()
    print(f"  llama.cpp server and images ready in {time.monotonic() - started:.1f}s", flush=True)
    state = Path(tempfile.mkdtemp(prefix="eval-operator-demo-"))
    try:
        print("starting the local control plane, kubelet, containerd and operator ...", flush=True)
        with LocalCluster(state) as cluster:
            assert cluster.kubelet is not None
            for archive in built.values():
                cluster.kubelet.load(archive)
            assert url.hostname is not None and url.port is not None
            with llama.LlamaServer(url.hostname, url.port, key, state / "llama.log") as model:
                print(f"  SmolLM2-135M-Instruct (llama.cpp) at {model.url}", flush=True)
                code = run_example(cluster, REAL_FILE, timeout, started)
                print("\nwhat the tools printed themselves (the task containers' logs):")
                for task in evaltask["spec"]["tasks"]:
                    log = cluster.kubectl(
                        "logs",
                        "-n",
                        DEMO_NAMESPACE,
                        "-c",
                        "task",
                        "-l",
                        f"evaloperator.io/task={task['name']}",
                        "--tail",
                        "-1",
                    ).stdout
                    for line in log.splitlines():
                        if TOOL_LINE.search(line):
                            print(f"  {task['name']}: {line.strip()}")
            print(f"\ndemo finished in {time.monotonic() - started:.1f}s; stopping everything")
            return code
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localkube",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up")
    up_parser.add_argument("--state", type=Path, default=ROOT / ".local")
    up_parser.add_argument(
        "--second-network",
        action="store_true",
        help="the second node name and addresses, to run beside another local cluster",
    )
    demo_parser = sub.add_parser("demo")
    demo_parser.add_argument("--timeout", type=float, default=600)
    real_parser = sub.add_parser("demo-real")
    real_parser.add_argument("--timeout", type=float, default=2400)
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.state, realnode.SECOND if args.second_network else realnode.FIRST)
    if args.command == "demo-real":
        return demo_real(args.timeout)
    return demo(args.timeout)


if __name__ == "__main__":
    sys.exit(main())
