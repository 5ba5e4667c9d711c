"""Helpers for end-to-end tests: reading the API, polling with a deadline, EvalTask docs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, watch

GROUP, VERSION, PLURAL = "evaloperator.io", "v1alpha1", "evaltasks"
TOKEN = "Bearer e2e-token-123"
TASKS = ("alpha", "beta", "gamma", "delta")
# The session operator's --start-timeout (seconds).
START_TIMEOUT = 15
# The session operator's --progress-interval (seconds): short, so that tests see progress.
PROGRESS_INTERVAL = 2.0
# The node's Debian base image (bash and python3): tasks' scripts run on it.
BASE_IMAGE, BASE_VERSION = "eval-operator/base", "bookworm"
T = TypeVar("T")
FINAL = ("Succeeded", "Failed")
# The venv's bin holds kubectl-eval (a console script of this package).
PLUGINS = Path(sys.executable).parent


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def kubectl_eval(cluster: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl eval ARGS` through the real kubectl, with the cluster's kubeconfig."""
    env = {
        **os.environ,
        "PATH": f"{PLUGINS}{os.pathsep}{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    result = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "eval", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@contextlib.contextmanager
def namespace(api_client: client.ApiClient, token: str, prefix: str = "e2e") -> Iterator[Api]:
    """A namespace of its own (see create_namespace); deleted afterwards."""
    the_api = create_namespace(api_client, f"{prefix}-{uuid.uuid4().hex[:8]}", token)
    try:
        yield the_api
    finally:
        the_api.core.delete_namespace(the_api.ns)


def create_namespace(api_client: client.ApiClient, name: str, token: str) -> Api:
    """A namespace ready for pods (its default service account exists), with the Secret
    `model-key` holding `token`."""
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        30,
        "the default service account",
    )
    the_api = Api(api_client, name)
    the_api.secret("model-key", {"token": token})
    return the_api


class Api:
    """The few reads and writes the tests make, straight against the API server."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def create_evaltask(
        self, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
    ) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EvalTask",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def create_task_config(self, name: str, spec: dict[str, Any], cluster: bool = False) -> None:
        """An EvalTaskConfig in this namespace, or (`cluster`) a ClusterEvalTaskConfig."""
        kind = "ClusterEvalTaskConfig" if cluster else "EvalTaskConfig"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        if cluster:
            self.custom.create_cluster_custom_object(GROUP, VERSION, "clusterevaltaskconfigs", body)
        else:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.ns, "evaltaskconfigs", body
            )

    def evaltask(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name
        )
        return doc

    def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.evaltask(name).get("status") or {}
        return status

    def patch_spec(self, name: str, spec_patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec_patch}
        )

    def wait_phase(
        self, name: str, phases: tuple[str, ...], timeout: float = 120
    ) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status = self.status(name)
            ok = (
                status.get("phase") in phases
                and status.get("observedGeneration")
                == self.evaltask(name)["metadata"]["generation"]
            )
            return status if ok else None

        return wait_for(done, timeout, f"EvalTask {name} to reach {phases}")

    def runs(self, evaltask: str) -> list[dict[str, Any]]:
        """The EvalTask's EvalRuns as records: spec and status (`state` None while a new
        EvalRun has no status yet), with `metrics` as a dict (name -> value) for reading and
        `metricsList` as the API keeps them, in order."""
        items = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.ns,
            "evalruns",
            label_selector=f"evaloperator.io/evaltask={evaltask}",
        )["items"]
        out = []
        for item in items:
            status = dict(item.get("status") or {})
            # A new EvalRun has no status until the operator's next write: state None.
            status.setdefault("state", None)
            status["metricsList"] = status.get("metrics") or []
            status["metrics"] = {m["name"]: m["value"] for m in status["metricsList"]}
            meta = item["metadata"]
            out.append({**item["spec"], **status, "name": meta["name"], "uid": meta["uid"]})
        return out

    def run(self, evaltask: str, model_name: str, task_name: str) -> dict[str, Any]:
        """One run's record (its EvalRun), as `runs` gives it."""
        found = [
            r for r in self.runs(evaltask) if r["model"] == model_name and r["task"] == task_name
        ]
        assert len(found) == 1, f"{len(found)} EvalRuns for {evaltask} {model_name}/{task_name}"
        return found[0]

    def evict_running_task(self, timeout: float) -> None:
        """Wait until a pod's task container runs, then evict that pod (Eviction API)."""

        def running() -> client.V1Pod | None:
            # The task is an init container: the pod's phase is Pending while it runs.
            for pod in self.pods():
                for status in pod.status.init_container_statuses or []:
                    if status.name == "task" and status.state.running:
                        return pod
            return None

        pod = wait_for(running, timeout, "the task container to run")
        self.core.create_namespaced_pod_eviction(
            pod.metadata.name,
            self.ns,
            client.V1Eviction(
                metadata=client.V1ObjectMeta(name=pod.metadata.name, namespace=self.ns)
            ),
        )

    def jobs(self) -> list[client.V1Job]:
        return list(self.batch.list_namespaced_job(self.ns).items)

    def pods(self) -> list[client.V1Pod]:
        return list(self.core.list_namespaced_pod(self.ns).items)

    def secret(self, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            self.ns, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
        )

    def configmap(self, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_config_map(
            self.ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)
        )


# A task script that calls its model once (with the injected auth header), records when
# it ran, and writes metrics.json. Its behaviour is steered by env vars.
TASK_SCRIPT = textwrap.dedent("""
    import json, os, sys, time, urllib.request
    started = time.time()
    headers = {"Content-Type": "application/json"}
    if os.environ.get("EVAL_AUTHORIZATION_HEADER_VALUE"):
        headers[os.environ["EVAL_AUTHORIZATION_HEADER_KEY"]] = (
            os.environ["EVAL_AUTHORIZATION_HEADER_VALUE"])
    body = {"model": os.environ["EVAL_MODEL_NAME"],
            "messages": [{"role": "user", "content": os.environ["EVAL_TASK_NAME"]}]}
    request = urllib.request.Request(os.environ["EVAL_INFERENCE_URL"],
                                     json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)["choices"][0]["message"]["content"]
    if os.environ.get("PROGRESS"):  # "<done>/<total>": the line the operator reads
        done, total = os.environ["PROGRESS"].split("/")
        print(f"EVAL_PROGRESS done={done} total={total}", flush=True)
    time.sleep(float(os.environ.get("SLEEP", "0")))
    print("answer:", answer, flush=True)
    if os.environ.get("EXIT_CODE"):
        print("the evaluation crashed: ValueError: no such split", file=sys.stderr)
        sys.exit(int(os.environ["EXIT_CODE"]))
    path = os.path.join(os.environ["EVAL_OUTPUT_DIR"], "metrics.json")
    if os.environ.get("MALFORMED"):
        open(path, "w").write(os.environ["MALFORMED"])
        sys.exit(0)
    metrics = [{"name": "score", "value": float(os.environ["SCORE"])},
               {"name": "answered", "value": float(answer == "right")},
               {"name": "started_at", "value": started},
               {"name": "finished_at", "value": time.time()}]
    json.dump({"metrics": metrics}, open(path, "w"))
""")


def task(name: str, score: float, **env: str | float) -> dict[str, Any]:
    """A task that runs TASK_SCRIPT with `python -c` on the node's Debian base image."""
    variables = [{"name": "SCORE", "value": str(score)}]
    variables += [{"name": k, "value": str(v)} for k, v in env.items()]
    return {
        "name": name,
        "image": BASE_IMAGE,
        "version": BASE_VERSION,
        "command": ["python", "-c", TASK_SCRIPT],
        "env": variables,
        "timeoutSeconds": 120,
    }


def model(name: str, url: str, secret: str = "model-key") -> dict[str, Any]:
    return {"name": name, "url": url, "auth": {"secretRef": {"name": secret, "key": "token"}}}


class Recorder:
    """Every state each EvalRun (by uid) had, and every Job uid each Job name had, as
    the API server's watches tell them."""

    def __init__(self, api: Api) -> None:
        self.states: dict[str, list[str | None]] = defaultdict(list)
        self.jobs: dict[str, list[str]] = defaultdict(list)
        self.overlaps: list[str] = []  # a Job made while another of its name still existed
        self._live: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._runs, args=(api,), daemon=True),
            threading.Thread(target=self._jobs, args=(api,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _runs(self, api: Api) -> None:
        with self._until_closed():
            w = watch.Watch()
            for event in w.stream(
                api.custom.list_namespaced_custom_object,
                "evaloperator.io",
                "v1alpha1",
                api.ns,
                "evalruns",
                timeout_seconds=600,
            ):
                obj: dict[str, Any] = event["object"]
                state = (obj.get("status") or {}).get("state")
                seen = self.states[obj["metadata"]["uid"]]
                if not seen or seen[-1] != state:
                    seen.append(state)
                if self._stop.is_set():
                    w.stop()

    def _jobs(self, api: Api) -> None:
        with self._until_closed():
            w = watch.Watch()
            for event in w.stream(api.batch.list_namespaced_job, api.ns, timeout_seconds=600):
                job: client.V1Job = event["object"]
                name, uid = job.metadata.name, job.metadata.uid
                if event["type"] == "ADDED":
                    if name in self._live and self._live[name] != uid:
                        self.overlaps.append(name)
                    self._live[name] = uid
                    if uid not in self.jobs[name]:
                        self.jobs[name].append(uid)
                elif event["type"] == "DELETED" and self._live.get(name) == uid:
                    del self._live[name]
                if self._stop.is_set():
                    w.stop()

    @contextlib.contextmanager
    def _until_closed(self) -> Iterator[None]:
        """A watch that fails after close() (its API server stopped, say) ends quietly."""
        try:
            yield
        except Exception:
            if not self._stop.is_set():
                raise

    def reopened(self) -> dict[str, list[str | None]]:
        """EvalRuns that went from a final state back to another one."""
        out = {}
        for uid, states in self.states.items():
            for i, state in enumerate(states):
                if state in FINAL and any(s != state for s in states[i + 1 :]):
                    out[uid] = states
        return out

    def close(self) -> None:
        self._stop.set()
