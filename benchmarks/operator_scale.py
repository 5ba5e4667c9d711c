"""How the operator scales: thousands of runs against a real control plane.

A real etcd, kube-apiserver, kube-controller-manager (its Job controller tuned so that
it is not the bottleneck: raised --kube-api-qps, --kube-api-burst, --concurrent-job-syncs)
and kube-scheduler (its client's rate raised alike), no kubelet: KWOK (sigs.k8s.io/kwok,
built by `hack/kube-binaries.sh kwok`), as in Kubernetes' and Kueue's scale tests,
simulates one node. The scheduler binds every pod to it, and KWOK's Stages (written here)
complete each pod at once: every container terminated with exit code 0, the collector's
termination message holding a few metrics in the collector's own encoding, so the operator
reads a result exactly as it would from a real pod. The operator runs as its own process,
as in a cluster.

Scenario A: many EvalTasks applied at once (default 200 x 3 models x 4 tasks = 2,400 runs).
Scenario B: one EvalTask at the largest matrix the CRD admits (32 x 32 = 1,024 runs), 20
metrics per run. Each scenario runs once per client (--clients: the operator, and
benchmarks/baseline_client.py, the least API work the same runs need), each on a fresh
control plane. Prints `name=value` lines, prefixed by the scenario and the client, then the
ratios operator / baseline (`<scenario>_throughput_ratio` of runs_per_s, `_lag_ratio` of
status_lag_p95_s, `_next_job_lag_ratio`, `_requests_ratio` of api_requests_per_run,
`_apiserver_cpu_ratio`). `--scenario curve` runs A's shape at --sizes (default 300, 1,200,
2,400, 4,800 runs) and prints `curve_<client>_<figure>_per_1000_runs`, each figure's slope
from the smallest size to the largest:

    runs_per_s              runs / done_s
    cpu_ms_per_run          the client's CPU per run
    apiserver_cpu_s_per_run kube-apiserver's CPU per run

    runs                    runs in the scenario
    first_jobs_s            apply to every chain's first Job created
    status_lag_p50_s/_p95_s a Job's completion to its EvalRun and its EvalTask's status
                            both showing it
    next_job_lag_p95_s      a Job's completion to the next Job of its chain created
    done_s                  apply to every EvalTask finished (Succeeded or Failed)
    failed_runs             runs that failed (none should: a failure is a bug to look at)
    runs_without_metrics    Succeeded EvalRuns not holding the simulated result's metrics
    peak_rss_mb, cpu_s      the client process's
    apiserver_cpu_s         kube-apiserver's CPU seconds (2 cores here: 2 per second at most)
    scheduler_cpu_s, kwok_cpu_s  kube-scheduler's and KWOK's, the simulated node's cost
    api_requests_per_run    the operator's API requests (the apiserver's audit log, by
                            user agent), and _<verb> for each verb
    raw_create_rate         bare Jobs per second from one client (A only)
    create_rate_ratio       the operator's first-Job creation rate / raw_create_rate (A)
    evaltask_bytes_max      the largest EvalTask seen, in bytes
    watch_restarts          the benchmark's own watches, cut off and listed again
    kwok_errors             KWOK's log lines at level ERROR (a stage it failed to play)
    pass_seconds_p95        a reconcile pass (the operator's histogram)
    settle_s                the last EvalTask Succeeded to the operator sending nothing for
                            10 s (it works through the events of the last runs)
    idle_requests_per_min   the operator's requests in the minute after that

    make bench-scale        (or: PYTHONPATH=hack .venv/bin/python benchmarks/operator_scale.py
                             [--scenario a|b|both|curve] [--clients operator,baseline]
                             [--evaltasks 200] [--matrix 32] [--sizes 300,1200,2400,4800])
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from eval_runner import results
from localkube.cluster import ROOT, binaries
from localkube.controlplane import ControlPlane, free_port, stop_process

GROUP = "evaloperator.io"
VERSION = "v1alpha1"
AGENT = "eval-bench/harness"
TUNED_CONTROLLER_ARGS = (
    "--kube-api-qps=1000",
    "--kube-api-burst=2000",
    "--concurrent-job-syncs=50",
    "--concurrent-gc-syncs=50",
)
# Its default (50 requests/s, a binding and an event per pod) would pace the runs.
TUNED_SCHEDULER_ARGS = ("--kube-api-qps=1000", "--kube-api-burst=2000")
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
"""
OURS = ("eval-bench", "kube-", "kubectl", "kwok")  # user agents that are not the operator's
COLLECTOR = "collector"  # the run's main container, whose termination message is the result
KWOK_NODE = "kwok-node"
HERE = Path(__file__).resolve().parent
KWOK_LABEL = ("type", "kwok")  # the nodes KWOK manages (--manage-nodes-with-label-selector)
# How many different results the Stage picks from at random (it can only pick: a Go template
# cannot write the collector's zlib encoding).
MESSAGES = 32

# KWOK's node-initialize Stage (kustomize/stage/node/fast/, trimmed to what the node needs:
# its capacity comes from its creation here). No heartbeat Stage: nothing here reads one
# (no node lifecycle controller).
NODE_INITIALIZE = """{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
nodeInfo:
  architecture: amd64
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  operatingSystem: linux
phase: Running
"""
# What a kubelet reports once every container of the pod exited 0, in one step: no Running
# phase in between (nothing in the operator waits for it). Filled in by `stages`.
CONTAINER_TERMINATED = """- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  imageID: ""
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
"""
POD_COMPLETE = """{{ $now := Now }}
{{ $message := index (list @MESSAGES@) (randInt 0 @COUNT@) }}
phase: Succeeded
startTime: {{ $now | Quote }}
hostIP: "198.51.100.200"
podIP: "198.18.200.1"
conditions:
- type: PodScheduled
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Initialized
  status: "True"
  lastTransitionTime: {{ $now | Quote }}
- type: Ready
  status: "False"
  reason: PodCompleted
  lastTransitionTime: {{ $now | Quote }}
initContainerStatuses:
{{ range .spec.initContainers }}
@TERMINATED@{{ end }}
containerStatuses:
{{ range .spec.containers }}
@TERMINATED@{{ if eq .name "@COLLECTOR@" }}
      message: {{ $message | Quote }}
{{ end }}
{{ end }}
"""


def client(server: str, token: str, ca_file: Path, agent: str) -> httpx.Client:
    tls = ssl.create_default_context(cafile=str(ca_file))
    return httpx.Client(
        base_url=server,
        verify=tls,
        headers={"Authorization": f"Bearer {token}", "User-Agent": agent},
        timeout=httpx.Timeout(30.0, read=None),
    )


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class Watcher(threading.Thread):
    """Lists then watches one resource across namespaces, calling `on(type, obj, t)`; when
    the API server ends the watch (a slow reader is cut off), lists again and counts it."""

    def __init__(self, api: httpx.Client, path: str, on: Callable[[str, dict, float], None]):
        super().__init__(daemon=True)
        self.api, self.path, self.on = api, path, on
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.restarts = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self._list_and_watch()
            except httpx.HTTPError:  # refused (429 while storage initializes) or cut off
                if self.stopped.is_set():
                    return
                time.sleep(0.5)
            self.restarts += 1

    def _list_and_watch(self) -> None:
        answer = self.api.get(self.path)
        answer.raise_for_status()
        listed = answer.json()
        now = time.monotonic()
        for item in listed["items"]:
            self.on("ADDED", item, now)
        params = {"watch": "true", "resourceVersion": listed["metadata"]["resourceVersion"]}
        with self.api.stream("GET", self.path, params=params) as stream:
            self.ready.set()
            for line in stream.iter_lines():
                event = json.loads(line)
                if event["type"] == "ERROR":
                    return
                self.on(event["type"], event["object"], time.monotonic())


class Observed:
    """What the watches saw, with when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job_added: dict[str, float] = {}  # job uid -> time
        self.job_done: dict[str, float] = {}
        self.job_run: dict[str, tuple[str, str, str, str]] = {}  # uid -> ns, et, model, task
        self.run_done: dict[tuple[str, str, str, str], float] = {}  # EvalRun Succeeded
        self.run_metrics: dict[tuple[str, str, str, str], int] = {}  # its metrics, how many
        self.entry_done: dict[tuple[str, str, str, str], float] = {}  # EvalTask entry
        self.evaltask_done: dict[tuple[str, str], float] = {}  # Succeeded or Failed
        self.failed_runs: set[tuple[str, str, str, str]] = set()
        self.evaltask_bytes_max = 0

    def on_job(self, kind: str, job: dict, t: float) -> None:
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        uid = meta["uid"]
        with self.lock:
            self.job_added.setdefault(uid, t)
            self.job_run[uid] = (
                meta["namespace"],
                labels.get(f"{GROUP}/evaltask", ""),
                labels.get(f"{GROUP}/model", ""),
                labels.get(f"{GROUP}/task", ""),
            )
            conditions = (job.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Complete" and c["status"] == "True" for c in conditions):
                self.job_done.setdefault(uid, t)

    def on_evalrun(self, kind: str, run: dict, t: float) -> None:
        if (run.get("status") or {}).get("state") != "Succeeded":
            return
        meta, spec = run["metadata"], run["spec"]
        labels = meta.get("labels") or {}
        key = (meta["namespace"], labels.get(f"{GROUP}/evaltask", ""), spec["model"], spec["task"])
        with self.lock:
            self.run_done.setdefault(key, t)
            self.run_metrics[key] = len(run["status"].get("metrics") or [])

    def on_evaltask(self, kind: str, task: dict, t: float) -> None:
        meta = task["metadata"]
        status = task.get("status") or {}
        with self.lock:
            self.evaltask_bytes_max = max(self.evaltask_bytes_max, len(json.dumps(task)))
            for entry in status.get("runs") or []:
                key = (meta["namespace"], meta["name"], entry["model"], entry["task"])
                if entry.get("state") == "Succeeded":
                    self.entry_done.setdefault(key, t)
                elif entry.get("state") == "Failed":
                    self.failed_runs.add(key)  # every run of this benchmark should succeed
            if status.get("phase") in ("Succeeded", "Failed"):
                self.evaltask_done.setdefault((meta["namespace"], meta["name"]), t)


def evaltask(name: str, models: int, tasks: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalTask",
        "metadata": {"name": name},
        "spec": {
            "probe": False,
            "models": [
                {"name": f"model-{m:02d}", "url": f"http://model-{m:02d}.models.svc:8000/v1"}
                for m in range(models)
            ],
            "tasks": [
                {
                    "name": f"task-{t:02d}",
                    "image": "eval-operator/base",
                    "version": "bookworm",
                    "command": ["true"],
                }
                for t in range(tasks)
            ],
        },
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ClientProcess:
    """The client under test, as a process of its own: the operator or the baseline."""

    proc: subprocess.Popen[bytes]

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc.pid)

    def pass_seconds_p95(self) -> float:
        return float("nan")

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


class Baseline(ClientProcess):
    """benchmarks/baseline_client.py: the least API work the same runs need."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "baseline_client.py"), "--kubeconfig", str(kubeconfig)],
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            raise RuntimeError(f"the baseline client did not start; see {log}")


class Operator(ClientProcess):
    def __init__(self, kubeconfig: Path, log: Path) -> None:
        self.port = free_port()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "eval_operator",
                    "--runner-image",
                    "eval-operator/runner:dev",
                    "--metrics-port",
                    str(self.port),
                    "--metrics-host",
                    "127.0.0.1",
                    "--log-level",
                    "WARNING",
                    # One process; its Lease renewals would count as idle requests.
                    "--leader-elect=false",
                ],
                env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the operator did not become healthy; see {log}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pass_seconds_p95(self) -> float:
        """histogram_quantile(0.95) of eval_operator_reconcile_duration_seconds, any result."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as r:
            text = r.read().decode()
        buckets: Counter[float] = Counter()
        for line in text.splitlines():
            if line.startswith("eval_operator_reconcile_duration_seconds_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                buckets[float(le)] += float(line.rsplit(" ", 1)[1])
        bounds = sorted(buckets)
        total = buckets[math.inf]
        rank, previous_bound, previous_count = 0.95 * total, 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= rank:
                if math.isinf(bound):
                    return previous_bound
                share = (rank - previous_count) / max(buckets[bound] - previous_count, 1e-9)
                return previous_bound + (bound - previous_bound) * share
            previous_bound, previous_count = bound, buckets[bound]
        return float("nan")


def stage(name: str, kind: str, expressions: list[dict[str, Any]], **step: Any) -> dict:
    """A KWOK Stage: resources of `kind` matching `expressions` get `step` done to them."""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": expressions},
            "steps": [step],
        },
    }


def status_patch(template: str) -> dict[str, Any]:
    return {"patch": {"subresource": "status", "root": "status", "template": template}}


def stages(metrics: int, rng: random.Random) -> list[dict]:
    """The node's and the pods' Stages; each result holds `metrics` metrics."""
    messages = []
    for _ in range(MESSAGES):
        values = {"score": round(rng.random(), 4)}
        values |= {f"metric_{i:02d}": round(rng.random(), 4) for i in range(1, metrics)}
        messages.append(json.dumps(results.encode(values)))  # a valid Go string literal too
    pod_complete = POD_COMPLETE
    for name, value in (
        ("@TERMINATED@", CONTAINER_TERMINATED),
        ("@MESSAGES@", " ".join(messages)),
        ("@COUNT@", str(MESSAGES)),
        ("@COLLECTOR@", COLLECTOR),
    ):
        pod_complete = pod_complete.replace(name, value)
    not_ready = {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "NotIn",
        "values": ["True"],
    }
    no_deletion = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
    return [
        stage("node-initialize", "Node", [not_ready], **status_patch(NODE_INITIALIZE)),
        stage(
            "pod-complete",
            "Pod",
            [no_deletion, {"key": ".status.phase", "operator": "In", "values": ["Pending"]}],
            **status_patch(pod_complete),
        ),
        # KWOK's own pod-delete: without a kubelet nobody else confirms a deletion.
        stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            delete=True,
        ),
    ]


class SimulatedNode:
    """One node that KWOK manages, by the Stages of `stages`."""

    def __init__(
        self, bin_dir: Path, cp: ControlPlane, api: httpx.Client, work: Path, metrics: int
    ) -> None:
        config = work / "kwok-stages.yaml"
        # JSON is valid YAML: KWOK reads it, no YAML writer needed.
        config.write_text(
            "".join(f"---\n{json.dumps(s)}\n" for s in stages(metrics, random.Random()))
        )
        self.log = work / "kwok.log"
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": KWOK_NODE,
                "labels": {"kubernetes.io/hostname": KWOK_NODE, KWOK_LABEL[0]: KWOK_LABEL[1]},
                "annotations": {"kwok.x-k8s.io/node": "fake"},
            },
            # No taint (Kueue's kwok nodes have one): it is the cluster's only node.
            "status": {
                "capacity": {"pods": "100000", "cpu": "1000", "memory": "4Ti"},
                "allocatable": {"pods": "100000", "cpu": "1000", "memory": "4Ti"},
            },
        }
        api.post("/api/v1/nodes", json=node).raise_for_status()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(bin_dir / "kwok"),
                    f"--kubeconfig={cp.kubeconfig}",
                    "--manage-all-nodes=false",
                    f"--manage-nodes-with-label-selector={KWOK_LABEL[0]}={KWOK_LABEL[1]}",
                    f"--config={config}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready(api)
        except BaseException:  # Ctrl-C too: the caller has no handle to stop it yet
            self.stop()
            raise

    def _wait_ready(self, api: httpx.Client) -> None:
        deadline = time.monotonic() + 60
        while api.get(f"/api/v1/nodes/{KWOK_NODE}").json()["status"].get("phase") != "Running":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"KWOK did not make its node Ready; see {self.log}")
            time.sleep(0.2)
        # The API server taints a new node not-ready; the node lifecycle controller, which
        # does not run here, would lift it once the node is Ready.
        api.patch(
            f"/api/v1/nodes/{KWOK_NODE}",
            content=json.dumps({"spec": {"taints": None}}),
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()

    def errors(self) -> int:
        with self.log.open("rb") as log:
            return sum(1 for line in log if b'"level":"ERROR"' in line)  # its JSON log

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)


class Audit:
    """The operator's requests in the apiserver's audit log, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.requests: list[tuple[float, str]] = []  # (epoch seconds, verb)

    def read(self) -> list[tuple[float, str]]:
        """Requests logged since the last read."""
        new = []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            for line in log:
                if not line.endswith(b"\n"):
                    break  # half written: read it next time
                self.offset += len(line)
                event = json.loads(line)
                if event.get("userAgent", "").startswith(OURS):
                    continue
                stamp = event["requestReceivedTimestamp"].replace("Z", "+00:00")
                new.append((datetime.fromisoformat(stamp).timestamp(), event["verb"]))
        self.requests += new
        return new

    def settle(self, quiet: float, limit: float) -> float:
        """Seconds until the operator sent nothing for `quiet` seconds (at most `limit`)."""
        started = time.time()
        last = started
        while time.time() - last < quiet and time.time() - started < limit:
            time.sleep(1)
            last = max([last, *(t for t, _ in self.read())])
        return last - started


def raw_create_rate(api: httpx.Client, count: int) -> float:
    """Bare Jobs (suspended: no pods) created one after another from one client."""
    api.post("/api/v1/namespaces", json={"metadata": {"name": "raw"}}).raise_for_status()
    started = time.monotonic()
    for i in range(count):
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"raw-{i}"},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "eval-operator/base:bookworm"}],
                    }
                },
            },
        }
        api.post("/apis/batch/v1/namespaces/raw/jobs", json=job).raise_for_status()
    return count / (time.monotonic() - started)


def scenario(
    label: str,
    bin_dir: Path,
    work: Path,
    evaltasks: int,
    models: int,
    tasks: int,
    metrics: int,
    timeout: float,
    idle_seconds: float,
    raw_jobs: int,
    audited: bool,
    client_kind: str = "operator",
) -> dict[str, float]:
    out: dict[str, float] = {}
    audit = work / "audit.log"
    (work / "audit-policy.yaml").write_text(AUDIT_POLICY)
    auditing = (
        (f"--audit-policy-file={work / 'audit-policy.yaml'}", f"--audit-log-path={audit}")
        if audited
        else ()
    )
    cp = ControlPlane(
        bin_dir,
        work / "controlplane",
        scheduler=True,
        controller_args=TUNED_CONTROLLER_ARGS,
        scheduler_args=TUNED_SCHEDULER_ARGS,
        apiserver_args=(
            *auditing,
            "--max-requests-inflight=1000",
            "--max-mutating-requests-inflight=500",
        ),
    )
    with cp, contextlib.ExitStack() as running:  # stopped on any exit, Ctrl-C too
        kubectl = [str(bin_dir / "kubectl"), "--kubeconfig", str(cp.kubeconfig)]
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            subprocess.run(
                [*kubectl, "apply", "--server-side", "-f", str(path)],
                check=True,
                capture_output=True,
            )
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
            check=True,
            capture_output=True,
        )
        api = client(cp.server, cp.token, cp.ca_file, AGENT)
        if raw_jobs:
            out["raw_create_rate"] = raw_create_rate(api, raw_jobs)
        # The CRDs' storage answers 429 for a while after they are Established: the
        # operator starts once it answers, so its first Jobs do not wait for kopf's retries.
        for plural in ("evaltasks", "evalruns"):
            while api.get(f"/apis/{GROUP}/{VERSION}/{plural}").status_code != 200:
                time.sleep(0.2)
        node = SimulatedNode(bin_dir, cp, api, work, metrics)
        running.callback(node.stop)
        start = Operator if client_kind == "operator" else Baseline
        operator = start(cp.kubeconfig, work / f"{client_kind}.log")
        running.callback(operator.stop)
        seen = Observed()
        watchers = [
            Watcher(client(cp.server, cp.token, cp.ca_file, AGENT), path, on)
            for path, on in (
                ("/apis/batch/v1/jobs", seen.on_job),
                (f"/apis/{GROUP}/{VERSION}/evalruns", seen.on_evalrun),
                (f"/apis/{GROUP}/{VERSION}/evaltasks", seen.on_evaltask),
            )
        ]
        for watcher in watchers:
            watcher.start()
            running.callback(watcher.stopped.set)
            watcher.ready.wait(30)
        namespaces = [f"bench-{i}" for i in range(max(1, evaltasks // 20))]
        for ns in namespaces:
            api.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
        applied = time.monotonic()
        for i in range(evaltasks):
            ns = namespaces[i % len(namespaces)]
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/evaltasks"
            api.post(path, json=evaltask(f"sweep-{i:03d}", models, tasks)).raise_for_status()
        deadline = applied + timeout
        while len(seen.evaltask_done) < evaltasks and time.monotonic() < deadline:
            if not all(w.is_alive() for w in watchers):
                raise RuntimeError("a watch of the benchmark's stopped; see its traceback")
            if operator.proc.poll() is not None:
                raise RuntimeError(f"the {client_kind} exited; see {work}/{client_kind}.log")
            time.sleep(0.5)
        finished = time.monotonic()
        out["runs"] = evaltasks * models * tasks
        out["finished_evaltasks"] = len(seen.evaltask_done)
        out["failed_runs"] = len(seen.failed_runs)
        out["runs_without_metrics"] = sum(n != metrics for n in seen.run_metrics.values())
        out["done_s"] = finished - applied
        out["runs_per_s"] = out["runs"] / out["done_s"]
        out["peak_rss_mb"] = operator.peak_rss_mb()
        out["cpu_s"] = operator.cpu_s()
        out["cpu_ms_per_run"] = 1000 * out["cpu_s"] / out["runs"]
        out["apiserver_cpu_s"] = cpu_seconds(cp.pid("kube-apiserver"))
        out["apiserver_cpu_s_per_run"] = out["apiserver_cpu_s"] / out["runs"]
        out["scheduler_cpu_s"] = cpu_seconds(cp.pid("kube-scheduler"))
        out["kwok_cpu_s"] = cpu_seconds(node.proc.pid)
        out["pass_seconds_p95"] = operator.pass_seconds_p95()
        out["evaltask_bytes_max"] = seen.evaltask_bytes_max
        out["kwok_errors"] = node.errors()
        out["watch_restarts"] = sum(w.restarts for w in watchers)

        with seen.lock:
            chains: dict[tuple[str, str, str], list[float]] = defaultdict(list)
            for uid, t in seen.job_added.items():
                ns, et, model, _ = seen.job_run[uid]
                chains[(ns, et, model)].append(t)
            firsts = [min(times) for times in chains.values()]
            out["first_jobs_s"] = max(firsts) - applied if firsts else float("nan")
            if raw_jobs and firsts:
                rate = len(firsts) / max(max(firsts) - applied, 1e-9)
                out["operator_first_job_rate"] = rate
                out["create_rate_ratio"] = rate / out["raw_create_rate"]
            status_lags, next_lags = [], []
            for uid, done in seen.job_done.items():
                ns, et, model, task = seen.job_run[uid]
                key = (ns, et, model, task)
                if key in seen.run_done and key in seen.entry_done:
                    status_lags.append(max(seen.run_done[key], seen.entry_done[key]) - done)
                later = [t for t in chains[(ns, et, model)] if t > done]
                if later:
                    next_lags.append(min(later) - done)
        out["status_lag_p50_s"] = statistics.median(status_lags) if status_lags else float("nan")
        out["status_lag_p95_s"] = quantile(status_lags, 0.95)
        out["next_job_lag_p95_s"] = quantile(next_lags, 0.95)

        # The operator's requests until it fell quiet (it may still work through events
        # of the last runs), then over a minute in which nothing changes.
        if audited:
            requests = Audit(audit)
            requests.read()
            out["settle_s"] = requests.settle(quiet=10, limit=300)
            verbs = Counter(verb for _, verb in requests.requests)
            out["api_requests_per_run"] = sum(verbs.values()) / max(out["runs"], 1)
            for verb, count in sorted(verbs.items()):
                out[f"api_requests_per_run_{verb}"] = count / max(out["runs"], 1)
            time.sleep(idle_seconds)
            out["idle_requests_per_min"] = len(requests.read()) * 60 / idle_seconds
    return out


def show(label: str, out: dict[str, float]) -> None:
    for name, value in out.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{label}_{name}={text}", flush=True)


RATIOS = (  # name, figure, operator / baseline
    ("throughput_ratio", "runs_per_s"),
    ("lag_ratio", "status_lag_p95_s"),
    ("next_job_lag_ratio", "next_job_lag_p95_s"),
    ("requests_ratio", "api_requests_per_run"),
    ("apiserver_cpu_ratio", "apiserver_cpu_s_per_run"),
)


def compare(label: str, work: Path, clients: list[str], **settings: Any) -> dict[str, dict]:
    """The scenario once per client, each on a fresh control plane; then the ratios."""
    found = {}
    for kind in clients:
        (work / kind).mkdir(parents=True)
        found[kind] = scenario(f"{label}_{kind}", work=work / kind, client_kind=kind, **settings)
        show(f"{label}_{kind}", found[kind])
    if len(found) == 2:
        ours, base = found["operator"], found["baseline"]
        for name, figure in RATIOS:
            if figure in ours and figure in base:
                print(f"{label}_{name}={ours[figure] / max(base[figure], 1e-9):.3f}", flush=True)
    return found


def curve(work: Path, clients: list[str], sizes: list[int], **settings: Any) -> None:
    """Scenario A's shape (3 models x 4 tasks an EvalTask) at growing sizes, and each
    figure's slope between the smallest and the largest size per 1,000 runs: a cost that
    grows faster than the runs shows as a per-run figure that climbs with the size."""
    figures = ("runs_per_s", "status_lag_p95_s", "next_job_lag_p95_s", "api_requests_per_run",
               "cpu_ms_per_run", "apiserver_cpu_s_per_run", "peak_rss_mb")  # fmt: skip
    seen: dict[int, dict[str, dict]] = {}
    for size in sizes:
        seen[size] = compare(
            f"curve{size}", work / f"curve{size}", clients, evaltasks=max(1, size // 12),
            models=3, tasks=4, raw_jobs=0, **settings,
        )  # fmt: skip
    low, high = min(sizes), max(sizes)
    for kind in clients:
        for figure in figures:
            a, b = seen[low][kind].get(figure), seen[high][kind].get(figure)
            if a is not None and b is not None:
                slope = (b - a) / ((high - low) / 1000)
                print(f"curve_{kind}_{figure}_per_1000_runs={slope:.4g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("a", "b", "both", "curve"), default="both")
    parser.add_argument("--evaltasks", type=int, default=200, help="scenario A's EvalTasks")
    parser.add_argument("--matrix", type=int, default=32, help="scenario B: N models x N tasks")
    parser.add_argument(
        "--sizes", default="300,1200,2400,4800", help="the curve's runs, comma-separated"
    )
    parser.add_argument(
        "--clients",
        default="operator,baseline",
        help="operator, baseline (benchmarks/baseline_client.py) or both: then the ratios",
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--raw-jobs", type=int, default=500)
    parser.add_argument(
        "--no-audit",
        action="store_true",
        help="no audit log (it costs the API server CPU): no request counts then",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the logs (audit, operator) and say where"
    )
    args = parser.parse_args()
    clients = args.clients.split(",")
    if unknown := set(clients) - {"operator", "baseline"}:
        parser.error(f"unknown clients {sorted(unknown)}: operator, baseline")
    bin_dir = binaries("kwok")
    if args.keep:
        kept = tempfile.mkdtemp(prefix="operator-scale-")
        print(f"logs in {kept}", file=sys.stderr)
    settings = {
        "bin_dir": bin_dir,
        "timeout": args.timeout,
        "idle_seconds": args.idle_seconds,
        "audited": not args.no_audit,
    }
    with (
        contextlib.nullcontext(kept)
        if args.keep
        else tempfile.TemporaryDirectory(prefix="operator-scale-") as tmp
    ):
        work = Path(tmp)
        if args.scenario in ("a", "both"):
            compare(
                "a", work / "a", clients, evaltasks=args.evaltasks, models=3, tasks=4,
                metrics=3, raw_jobs=args.raw_jobs, **settings,
            )  # fmt: skip
        if args.scenario in ("b", "both"):
            compare(
                "b", work / "b", clients, evaltasks=1, models=args.matrix, tasks=args.matrix,
                metrics=20, raw_jobs=0, **settings,
            )  # fmt: skip
        if args.scenario == "curve":
            sizes = [int(n) for n in args.sizes.split(",")]
            curve(work, clients, sizes, metrics=3, **settings)


if __name__ == "__main__":
    main()
