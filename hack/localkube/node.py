"""The local node: a scheduler and a kubelet for the local control plane, on this machine.

The control plane has neither, so without this pods stay Pending forever. The
node registers a Node, binds every unscheduled pod to itself and runs each pod's
containers as local processes: images are not pulled, programs come from this
machine (see `images`), and every container gets its own private mount
namespace so volumes appear at their mount paths. It reports pod status as the
kubelet does, which is what the Job controller, the garbage collector and the
operator react to: phases, conditions, container states, exit codes and
termination messages. Deleting a pod (directly, by a Job deadline or by the
garbage collector) stops its processes, then the node removes the object.

    with LocalNode(plane.kubeconfig, tmp / "node", images={"eval/runner": [...]}) as node:
        ...  # create Jobs; node.logs(namespace, pod, container) reads their output
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from localkube.kubejson import STRATEGIC_MERGE, Kube, KubeError
from localkube.kubeletapi import LogServer, self_signed
from localkube.podworker import HOST_IP, TERMINAL, PodWorker, now

log = logging.getLogger("localkube.node")
DEFAULT_SCHEDULER = "default-scheduler"


class LocalNode:
    """A Node that schedules and runs all pods of the cluster on this machine.

    It binds every unbound pod meant for the default scheduler (not gated, not
    terminating). `images` maps an image name (no tag/digest) to the argv prefix
    that stands in for its entry point when a container has no `command`.
    Containers run as root in their own mount namespace (so: Linux, root);
    missing mount points are created on the host as empty placeholders. Start
    with `start()`/`with`; `stop()` kills every running container (the pods stay
    as they were, as when a kubelet stops). Logs are also served, without
    authentication, on a loopback port for `kubectl logs`.
    """

    def __init__(
        self,
        kubeconfig: Path,
        work_dir: Path,
        name: str = "local-node",
        images: Mapping[str, list[str]] | None = None,
        *,
        heartbeat_seconds: float = 10.0,
        max_grace_seconds: float = 5.0,
    ) -> None:
        self.kubeconfig, self.work_dir, self.name = Path(kubeconfig), Path(work_dir), name
        self.images = dict(images or {})
        self.heartbeat_seconds, self.max_grace_seconds = heartbeat_seconds, max_grace_seconds
        self.kube = Kube(self.kubeconfig)
        server = urlsplit(self.kube.server)
        port = str(server.port or 443)
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": server.hostname or HOST_IP,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
        }
        self.capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_mem_total_kib()}Ki",
            "pods": "110",
            "ephemeral-storage": str(shutil.disk_usage(self.work_dir.anchor or "/").total),
        }
        self._workers: dict[str, PodWorker] = {}
        self._removed: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch_handle: list[Any] = []
        self._log_server: LogServer | None = None

    def __enter__(self) -> LocalNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalNode:
        """Serve logs, register the Node, start the watch and heartbeat threads."""
        (self.work_dir / "pods").mkdir(parents=True, exist_ok=True)
        try:
            pki = self_signed(self.work_dir / "pki", self.name)
            if pki is not None:
                self._log_server = LogServer(self.log_path, self._running, *pki).start()
            else:
                log.warning("no openssl: `kubectl logs` will not reach the local node")
            self._register()
        except BaseException:
            self.stop()
            raise
        for target in (self._watch_loop, self._heartbeat_loop):
            thread = threading.Thread(
                target=target, name=f"{self.name}-{target.__name__}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop watching and kill every container the node runs (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        Kube.interrupt(self._watch_handle)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.terminate(1.0, finalize=False)
        for worker in workers:
            worker.join(timeout=self.max_grace_seconds + 5)
        if self._log_server is not None:
            self._log_server.stop()
        self.kube.close()

    def logs(self, namespace: str, pod: str, container: str) -> str:
        """A container's output so far (stdout and stderr) from its latest pod of that name."""
        return self.log_path(namespace, pod, container).read_text(errors="replace")

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        found = sorted(
            (self.work_dir / "pods").glob(f"{namespace}_{pod}_*/{container}.log"),
            key=lambda path: path.stat().st_mtime,
        )
        if not found:
            raise FileNotFoundError(f"no log for container {container} of pod {namespace}/{pod}")
        return found[-1]

    def _running(self, namespace: str, pod: str, container: str) -> bool:
        with self._lock:
            workers = list(self._workers.values())
        return any(
            w.namespace == namespace and w.pod_name == pod and w.is_running(container)
            for w in workers
        )

    # --- the Node object ------------------------------------------------------------

    def _register(self) -> None:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
        }
        try:
            self.kube.call("POST", "/api/v1/nodes", body)
        except KubeError as error:
            if error.status != 409:
                raise
        # Admission taints new nodes not-ready; no node lifecycle controller lifts that here.
        node = self.kube.call("GET", f"/api/v1/nodes/{self.name}")
        taints = node["spec"].get("taints") or []
        kept = [t for t in taints if not t["key"].startswith("node.kubernetes.io/")]
        if kept != taints:
            self.kube.call(
                "PATCH",
                f"/api/v1/nodes/{self.name}",
                {"spec": {"taints": kept}},
                content_type="application/merge-patch+json",
            )
        version = self.kube.call("GET", "/version").get("gitVersion", "")
        port = self._log_server.port if self._log_server else 0
        status = {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": self._conditions(transition=True),
            "addresses": [{"type": "InternalIP", "address": HOST_IP}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": platform.platform(),
                "containerRuntimeVersion": "localnode://1",
                "kubeletVersion": version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
        }
        self._patch_node_status(status)

    def _conditions(self, transition: bool) -> list[dict[str, str]]:
        beat = now()
        conditions = [
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
        ]
        out = []
        for kind, status, reason, message in conditions:
            condition = {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": beat,
            }
            if transition:
                condition["lastTransitionTime"] = beat
            out.append(condition)
        return out

    def _patch_node_status(self, status: Mapping[str, Any]) -> None:
        self.kube.call(
            "PATCH",
            f"/api/v1/nodes/{self.name}/status",
            {"status": status},
            content_type=STRATEGIC_MERGE,
        )

    def _heartbeat_loop(self) -> None:
        """Keep the Node Ready, re-registering it if someone deleted it."""
        while not self._stopping.wait(self.heartbeat_seconds):
            try:
                self._patch_node_status({"conditions": self._conditions(transition=False)})
            except KubeError as error:
                if error.status == 404:
                    with contextlib.suppress(KubeError):
                        self._register()
                else:
                    log.warning("node heartbeat: %s", error)

    # --- pods -----------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """List, then watch all pods; relist when the watch expires or breaks."""
        version = ""
        while not self._stopping.is_set():
            try:
                version = self._watch(version or self._relist())
            except Exception as error:
                if self._stopping.is_set():
                    break
                if not isinstance(error, _Expired) and getattr(error, "status", 0) != 410:
                    log.warning("pod watch failed (%s); relisting", error)
                    self._stopping.wait(1.0)
                version = ""

    def _relist(self) -> str:
        listing = self.kube.call("GET", "/api/v1/pods")
        seen = set()
        for pod in listing["items"]:
            seen.add(pod["metadata"]["uid"])
            self._handle(pod, deleted=False)
        with self._lock:
            vanished = [w for uid, w in self._workers.items() if uid not in seen]
        for worker in vanished:
            self._handle(worker.pod, deleted=True)
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        query = {"resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": 300}
        for event in self.kube.watch("/api/v1/pods", query, self._watch_handle, self._stopping):
            kind, pod = event["type"], event["object"]
            if kind == "ERROR":
                if pod.get("code") == 410:
                    raise _Expired
                raise KubeError(int(pod.get("code") or 0), str(pod.get("message")))
            version = pod["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                self._handle(pod, deleted=kind == "DELETED")
        return version

    def _handle(self, pod: dict[str, Any], deleted: bool) -> None:
        """React to one pod's latest state; a bad pod is logged and failed, never fatal."""
        try:
            self._dispatch(pod, deleted)
        except Exception as error:
            meta = pod.get("metadata", {})
            log.exception("pod %s/%s", meta.get("namespace"), meta.get("name"))
            if not deleted and pod.get("spec", {}).get("nodeName") == self.name:
                body = {
                    "status": {
                        "phase": "Failed",
                        "reason": "LocalNodeError",
                        "message": f"local node error: {error}",
                    }
                }
                with contextlib.suppress(KubeError):
                    self.kube.call(
                        "PATCH",
                        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                        body,
                        content_type=STRATEGIC_MERGE,
                    )

    def _dispatch(self, pod: dict[str, Any], deleted: bool) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid, node = meta["uid"], spec.get("nodeName")
        with self._lock:
            worker = self._workers.pop(uid, None) if deleted else self._workers.get(uid)
        if deleted:
            if worker is not None:
                worker.terminate(float(spec.get("terminationGracePeriodSeconds", 30)), False)
            return
        terminating = meta.get("deletionTimestamp") is not None
        if not node:
            # As the default scheduler: gated pods and other schedulers' pods are not ours.
            mine = spec.get("schedulerName", DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
            if mine and not terminating and not spec.get("schedulingGates"):
                self._bind(pod)
            return
        if node != self.name:
            return
        if terminating:
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            if worker is None or not worker.terminate(grace, finalize=True):
                self.remove_pod(meta["namespace"], meta["name"], uid)
            return
        if worker is None and (pod.get("status") or {}).get("phase") not in TERMINAL:
            worker = PodWorker(self, pod)
            with self._lock:
                self._workers[uid] = worker
            worker.start()

    def _bind(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        }
        try:
            self.kube.call(
                "POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding", body
            )
        except KubeError as error:
            if error.status not in (404, 409):  # gone, or bound meanwhile
                raise

    def remove_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete a stopped pod for good (grace 0), as a kubelet ends a graceful deletion."""
        with self._lock:
            if uid in self._removed:
                return
            self._removed.add(uid)
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.kube.call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body)
        except KubeError as error:
            if error.status not in (404, 409):
                log.warning("removing pod %s/%s: %s", namespace, name, error)
                with self._lock:
                    self._removed.discard(uid)


class _Expired(Exception):
    """The watch's resourceVersion is too old (HTTP 410): relist."""


def _mem_total_kib() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 8 * 1024 * 1024
