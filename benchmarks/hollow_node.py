"""A simulated node, for the scale benchmark only (as kubemark's hollow nodes): no kubelet,
no containers. No test and no demo uses it.

It registers a Node, binds every unscheduled pod to it (the Binding API, as a scheduler
does) and at once marks the pod Succeeded, every container terminated with exit code 0;
the collector's termination message carries a few metrics in the collector's own
encoding, so the operator reads a result exactly as it would from a real pod.
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from eval_operator import constants
from eval_runner import results

NODE: Final = "hollow-node"
USER_AGENT: Final = "eval-bench/hollow-node"


def client(server: str, token: str, ca_file: Path, agent: str) -> httpx.Client:
    tls = ssl.create_default_context(cafile=str(ca_file))
    return httpx.Client(
        base_url=server,
        verify=tls,
        headers={"Authorization": f"Bearer {token}", "User-Agent": agent},
        timeout=httpx.Timeout(30.0, read=None),
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terminated(name: str, image: str, message: str = "") -> dict[str, Any]:
    now = _now()
    state: dict[str, Any] = {
        "exitCode": 0,
        "reason": "Completed",
        "startedAt": now,
        "finishedAt": now,
    }
    if message:
        state["message"] = message
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {"terminated": state},
    }


def completed_status(pod: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    """The status a kubelet reports for the pod once all its containers exited 0."""
    spec = pod["spec"]
    message = results.encode(metrics)

    def statuses(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            _terminated(
                c["name"],
                c["image"],
                message if c["name"] == constants.COLLECTOR_CONTAINER else "",
            )
            for c in containers
        ]

    now = _now()
    return {
        "phase": "Succeeded",
        "startTime": now,
        "hostIP": "198.51.100.200",
        "podIP": "198.18.200.1",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {
                "type": "Ready",
                "status": "False",
                "reason": "PodCompleted",
                "lastTransitionTime": now,
            },
        ],
        "initContainerStatuses": statuses(spec.get("initContainers") or []),
        "containerStatuses": statuses(spec["containers"]),
    }


class HollowNode:
    """Binds and completes pods with `workers` threads; `metrics` metrics per result."""

    def __init__(
        self, server: str, token: str, ca_file: Path, metrics: int = 3, workers: int = 4
    ) -> None:
        self._connect = lambda: client(server, token, ca_file, USER_AGENT)
        self.metrics = metrics
        self.workers = workers
        self.completed = 0
        self.errors: list[str] = []
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> HollowNode:
        with self._connect() as api:
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
                "status": {
                    "capacity": {"pods": "100000", "cpu": "1000", "memory": "4Ti"},
                    "allocatable": {"pods": "100000", "cpu": "1000", "memory": "4Ti"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Hollow"}],
                },
            }
            api.post("/api/v1/nodes", json=node).raise_for_status()
        self._threads = [threading.Thread(target=self._watch, daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in range(self.workers):
            self._queue.put(None)

    def _watch(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the control plane stopped: done
            self._list_and_watch()

    def _list_and_watch(self) -> None:
        """Unscheduled pods (spec.nodeName empty), listed then watched; relisted when the
        watch expires."""
        selector = {"fieldSelector": "spec.nodeName="}
        with self._connect() as api:
            while not self._stop.is_set():
                answer = api.get("/api/v1/pods", params=selector)
                if answer.status_code != 200:  # 429 while the storage (re)initializes
                    self._stop.wait(0.5)
                    continue
                listed = answer.json()
                for pod in listed["items"]:
                    self._queue.put((pod["metadata"]["namespace"], pod["metadata"]["name"]))
                params = {
                    **selector,
                    "watch": "true",
                    "resourceVersion": listed["metadata"]["resourceVersion"],
                }
                with api.stream("GET", "/api/v1/pods", params=params) as stream:
                    for line in stream.iter_lines():
                        if self._stop.is_set():
                            return
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            break  # expired: list again
                        if event["type"] == "ADDED":
                            meta = event["object"]["metadata"]
                            self._queue.put((meta["namespace"], meta["name"]))

    def _work(self) -> None:
        rng = random.Random()
        with self._connect() as api:
            while (item := self._queue.get()) is not None:
                namespace, name = item
                try:
                    self._complete(api, namespace, name, rng)
                except httpx.HTTPError as error:
                    with self._lock:
                        self.errors.append(f"{namespace}/{name}: {error}")

    def _complete(self, api: httpx.Client, namespace: str, name: str, rng: random.Random) -> None:
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        }
        bound = api.post(f"{path}/binding", json=binding)
        if bound.status_code in (404, 409):
            return  # gone, or bound already (a relist saw it twice)
        bound.raise_for_status()
        pod = api.get(path).json()
        metrics = {"score": round(rng.random(), 4)}
        metrics |= {f"metric_{i:02d}": round(rng.random(), 4) for i in range(1, self.metrics)}
        patched = api.patch(
            f"{path}/status",
            content=json.dumps({"status": completed_status(pod, metrics)}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        patched.raise_for_status()
        with self._lock:
            self.completed += 1
