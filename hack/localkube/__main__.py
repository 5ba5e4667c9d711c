"""`python -m localkube up|demo`: a local cluster with the operator, for people.

Both run the real node: kubelet and containerd run the pods, from our own images (built
and cached on first use).

up    start the control plane, the node and the operator, write the kubeconfig to
      <state>/kubeconfig, say which images the node has and where pods reach the host, and
      keep running until SIGTERM/SIGINT (`make down` sends it).
demo  bring everything up in a temporary folder, start two mock model services on the
      host, apply examples/demo.yaml, show progress, print the results, stop everything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eval_runner import config, samples
from localkube import realnode
from localkube.cluster import ROOT, LocalCluster, load_documents
from localkube.mockmodel import MockModel

DEMO_FILE = ROOT / "examples" / "demo.yaml"
DEMO_NAMESPACE = "demo"
DEMO_MODELS = {"small-model": (0.55, 18431), "large-model": (0.9, 18432)}


def up(state: Path, network: realnode.Network = realnode.FIRST) -> int:
    shutil.rmtree(state / "cluster", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
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
        print(f"export KUBECONFIG={(state / 'kubeconfig').resolve()}", flush=True)
        while not stop:
            time.sleep(0.5)
    finally:
        cluster.stop()
        (state / "ready").unlink(missing_ok=True)
    return 0


def demo_tasks() -> list[dict[str, Any]]:
    for doc in load_documents(DEMO_FILE):
        if doc.get("kind") == "EvalTask":
            spec: dict[str, Any] = doc["spec"]  # type: ignore[assignment]
            return list(spec["tasks"])
    raise ValueError(f"{DEMO_FILE} has no EvalTask")


def answer_key() -> dict[str, str]:
    """Questions and answers of the builtin sets the demo's tasks run, for the mock models."""
    answers: dict[str, str] = {}
    for task in demo_tasks():
        env = {e["name"]: e.get("value", "") for e in task.get("env", [])}
        for sample in samples.load(env["EVAL_DATASET"], config.Fields()):
            if sample.query is not None and sample.answers:
                answers[sample.query] = sample.answers[0]
    return answers


def get_evaltask(cluster: LocalCluster) -> dict[str, Any]:
    out = cluster.kubectl("get", "evaltask", "demo", "-n", DEMO_NAMESPACE, "-o", "json").stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def get_evalruns(cluster: LocalCluster) -> list[dict[str, Any]]:
    """The demo's EvalRuns, model-major in task order as the EvalTask lists its runs."""
    out = cluster.kubectl(
        "get", "evalruns", "-n", DEMO_NAMESPACE, "-l", "evaloperator.io/evaltask=demo", "-o", "json"
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def print_results(status: dict[str, Any], evalruns: list[dict[str, Any]]) -> None:
    """Each run's record (its EvalRun): the score, samples, errors, latency."""
    primary = {t["name"]: t.get("primaryMetric", "") for t in demo_tasks()}
    records = {(r["spec"]["model"], r["spec"]["task"]): r.get("status") or {} for r in evalruns}
    print(f"\nphase={status.get('phase')} progress={status.get('progress')}\n")
    header = (
        f"{'MODEL':<13}{'TASK':<17}{'STATE':<11}{'METRIC':<17}{'SCORE':>6}"
        f"{'SAMPLES':>9}{'ERRORS':>8}{'P95(s)':>8}"
    )
    print(header)
    print("-" * len(header))
    for run in status.get("runs", []):
        record = records.get((run["model"], run["task"]), {})
        m = {x["name"]: x["value"] for x in record.get("metrics") or []}
        metric = primary.get(run["task"], "")

        def cell(key: str, fmt: str, m: dict[str, float] = m) -> str:
            return format(m[key], fmt) if key in m else "-"

        print(
            f"{run['model']:<13}{run['task']:<17}{run['state']:<11}{metric:<17}"
            f"{cell(metric, '.3f'):>6}{cell('samples', '.0f'):>9}{cell('errors', '.0f'):>8}"
            f"{cell('latency_p95_seconds', '.3f'):>8}"
        )
        if run["state"] == "Failed":
            print(f"    {record.get('message', '')}")
    print("\nleaderboard (weighted mean of each task's score)")
    for entry in status.get("leaderboard", []):
        print(
            f"  #{entry['rank']} {entry['model']:<13} {entry['score']:.3f} over "
            f"{entry['tasks']} tasks"
        )


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
                MockModel(
                    name,
                    answers,
                    accuracy,
                    header_value="Bearer demo-token",
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
            cluster.kubectl("create", "namespace", DEMO_NAMESPACE)
            print(
                cluster.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(DEMO_FILE)).stdout,
                flush=True,
            )
            last = ""
            deadline = time.monotonic() + timeout
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                status = get_evaltask(cluster).get("status") or {}
                running = [
                    f"{r['model']}/{r['task']}"
                    for r in status.get("runs", [])
                    if r["state"] == "Running"
                ]
                line = (
                    f"{status.get('phase', 'Pending'):<10} {status.get('progress', '0/6')}"
                    f"  running: {', '.join(running) or '-'}"
                )
                if line != last:
                    print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)
                    last = line
                if status.get("phase") in ("Succeeded", "Failed"):
                    break
                time.sleep(0.5)
            else:
                print("the demo did not finish in time", file=sys.stderr)
                print(cluster.operator_log.read_text()[-3000:], file=sys.stderr)
                return 1
            print_results(status, get_evalruns(cluster))
            print("\n$ kubectl get evalruns -n demo")
            print(cluster.kubectl("get", "evalruns", "-n", DEMO_NAMESPACE).stdout, end="")
            print(f"\ndemo finished in {time.monotonic() - started:.1f}s; stopping everything")
            return 0 if status.get("phase") == "Succeeded" else 1
    finally:
        for model in models:
            model.__exit__(None, None, None)
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
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.state, realnode.SECOND if args.second_network else realnode.FIRST)
    return demo(args.timeout)


if __name__ == "__main__":
    sys.exit(main())
