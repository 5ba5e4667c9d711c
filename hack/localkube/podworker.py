"""One pod on the local node: its containers as processes, its status as the kubelet writes it.

A `PodWorker` thread owns one pod from binding to its end: it sets up volumes,
runs init containers one after another and then the containers side by side
(each through podexec.py, in its own mount namespace), restarts them as the
restartPolicy says, enforces activeDeadlineSeconds, and patches pods/status at
each change. Deletion stops it: SIGTERM to each process group, SIGKILL after
the (capped) grace period, a last terminal status, then the object's removal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localkube.kubejson import STRATEGIC_MERGE, KubeError
from localkube.podsetup import PodResolver, SetupError, base_environment, container_argv, image_key

if TYPE_CHECKING:
    from localkube.node import LocalNode

log = logging.getLogger("localkube.node")
HOST_IP = "127.0.0.1"
PODEXEC = Path(__file__).with_name("podexec.py")
MAX_MESSAGE_BYTES = 4096  # the kubelet's limits for termination messages
TAIL_LINES, TAIL_BYTES = 80, 2048
POLL_SECONDS = 0.1
RETRY_SECONDS = 1.0  # setup errors and restarts; the kubelet backs off longer
TERMINAL = ("Succeeded", "Failed")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def termination_message(policy: str, message_file: Path, log_file: Path, exit_code: int) -> str:
    """The file's first 4096 bytes; with FallbackToLogsOnError, a failed container
    with an empty file gets its log's last 80 lines, at most 2048 bytes, as the kubelet does."""
    data = b""
    with contextlib.suppress(OSError), message_file.open("rb") as source:
        data = source.read(MAX_MESSAGE_BYTES)
    if data or policy != "FallbackToLogsOnError" or exit_code == 0:
        return data.decode("utf-8", errors="replace")
    try:
        with log_file.open("rb") as source:
            source.seek(max(0, source.seek(0, os.SEEK_END) - TAIL_BYTES))
            tail = source.read()
    except OSError:
        return ""
    return b"".join(tail.splitlines(keepends=True)[-TAIL_LINES:]).decode(errors="replace")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Container:
    """One container of a pod: its process, its state, and its status entry."""

    def __init__(self, spec: Mapping[str, Any], init: bool) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.init = init
        self.state: dict[str, Any] = {"waiting": {"reason": "PodInitializing"}}
        self.last_state: dict[str, Any] = {}
        self.restarts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.container_id = ""
        self.next_try = 0.0

    @property
    def exit_code(self) -> int | None:
        return self.state["terminated"]["exitCode"] if "terminated" in self.state else None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0

    def status(self) -> dict[str, Any]:
        status = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.succeeded if self.init else self.proc is not None,
            "started": self.proc is not None,
            "restartCount": self.restarts,
            "image": self.spec.get("image", ""),
            "imageID": f"localnode://{image_key(self.spec.get('image', ''))}",
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


class PodWorker(threading.Thread):
    """Runs one pod to its end: volumes, init containers in order, then the containers."""

    def __init__(self, node: LocalNode, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.node, self.pod = node, pod
        self.namespace, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.dir = node.work_dir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.init = [Container(c, True) for c in spec.get("initContainers") or []]
        self.main = [Container(c, False) for c in spec["containers"]]
        self.policy: str = spec.get("restartPolicy", "Always")
        self.phase, self.reason, self.message = "Pending", "", ""
        self.start_time, self.started = now(), time.monotonic()
        self.conditions: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, Path] | None = None
        self.volume_retry = 0.0
        self.resolver = PodResolver(node.kube, pod, node.work_dir, HOST_IP, node.capacity)
        self._terminate = threading.Event()
        self._grace, self._finalize, self._finished = 0.0, False, False
        self._lock = threading.Lock()

    def terminate(self, grace: float, finalize: bool) -> bool:
        """Stop the pod's processes; `finalize`: report it terminal and remove the object.

        False when the worker has already finished: then the caller removes the pod.
        """
        with self._lock:
            if self._finished:
                return False
            self._grace = min(grace, self.node.max_grace_seconds)
            self._finalize = self._finalize or finalize
            self._terminate.set()
            return True

    def is_running(self, container: str) -> bool:
        return any(c.name == container and c.proc is not None for c in self.init + self.main)

    def log_path(self, container: str) -> Path:
        return self.dir / f"{container}.log"

    # --- the loop -------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:
            log.exception("pod %s/%s failed in the local node", self.namespace, self.pod_name)
            self._kill(0)
            self._end("Failed", "LocalNodeError", f"local node error: {error}")
        finally:
            self._kill(0)
            with self._lock:
                self._finished = True
            if self._finalize:
                self.node.remove_pod(self.namespace, self.pod_name, self.uid)

    def _run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.pod.get("status") or {}).get("startTime"):
            self._end("Failed", "NodeRestarted", "the local node restarted; processes are gone")
            return
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        dirty = True
        while True:
            if self._terminate.is_set():
                self._kill(self._grace)
                if self._finalize:
                    self._end(self.phase if self.phase in TERMINAL else "Failed")
                return
            if deadline is not None and time.monotonic() - self.started > deadline:
                self._kill(min(grace, self.node.max_grace_seconds))
                message = "Pod was active on the node longer than the specified deadline"
                self._end("Failed", "DeadlineExceeded", message)
                return
            dirty = self._step() or dirty
            if self.phase in TERMINAL:
                self._end(self.phase)
                return
            if dirty:
                dirty = not self._patch()
            self._terminate.wait(POLL_SECONDS)

    def _step(self) -> bool:
        """Reap, set up, start: one pass of the state machine; True if status changed."""
        changed = False
        for c in self.init + self.main:
            if c.proc is not None and c.proc.poll() is not None:
                self._reap(c)
                changed = True
        clock = time.monotonic()
        if self.volumes is None:
            return self._setup_volumes(clock) or changed
        pending_init = next((c for c in self.init if not c.succeeded), None)
        if pending_init is not None:
            c = pending_init
            if c.proc is None and c.exit_code is not None and self.policy == "Never":
                self.phase = "Failed"
            elif c.proc is None and clock >= c.next_try:
                changed = self._start(c) or changed
            return changed
        for c in self.main:
            restart = self.policy == "Always" or (self.policy == "OnFailure" and c.exit_code)
            if c.proc is None and clock >= c.next_try and (c.exit_code is None or restart):
                changed = self._start(c) or changed
        phase = self._phase()
        changed = changed or phase != self.phase
        self.phase = phase
        return changed

    def _phase(self) -> str:
        """The kubelet's getPhase for a pod whose init containers are done."""
        if any(c.proc is None and c.exit_code is None for c in self.main):
            return "Pending"
        if any(c.proc is not None for c in self.main):
            return "Running"
        failed = any(c.exit_code for c in self.main)
        if self.policy == "Always" or (self.policy == "OnFailure" and failed):
            return "Running"
        return "Failed" if failed else "Succeeded"

    def _setup_volumes(self, clock: float) -> bool:
        if clock < self.volume_retry:
            return False
        try:
            self.volumes = self.resolver.volumes(self.dir / "volumes")
        except SetupError as error:
            self.volume_retry = clock + RETRY_SECONDS
            waiting = {"waiting": {"reason": error.reason, "message": error.message}}
            changed = any(c.state != waiting for c in self.init + self.main)
            for c in self.init + self.main:
                c.state = waiting
            return changed
        for c in self.init + self.main:
            c.state = {"waiting": {"reason": "PodInitializing"}}
        return True

    # --- processes ------------------------------------------------------------------

    def _start(self, c: Container) -> bool:
        assert self.volumes is not None
        message_file = self.dir / f"{c.name}.termination-log"
        try:
            env = self.resolver.env(c.spec, self.node.service_env)
            argv = container_argv(c.spec, env, self.node.images)
            mounts = self.resolver.mounts(c.spec, self.volumes, env, message_file)
        except SetupError as error:
            c.next_try = time.monotonic() + RETRY_SECONDS
            waiting = {"waiting": {"reason": error.reason, "message": error.message}}
            changed, c.state = c.state != waiting, waiting
            return changed
        message_file.write_bytes(b"")
        start_error = self.dir / f"{c.name}.start-error"
        start_error.unlink(missing_ok=True)
        hostname = (self.pod["spec"].get("hostname") or self.pod_name)[:63]
        spec = {
            "argv": argv,
            "env": {**base_environment(), "HOSTNAME": hostname, **env},
            "cwd": c.spec.get("workingDir"),
            "hostname": hostname,
            "mounts": mounts,
            "startError": str(start_error),
            "parentPid": os.getpid(),
        }
        spec_file = self.dir / f"{c.name}.json"
        spec_file.touch(mode=0o600)
        spec_file.write_text(json.dumps(spec))
        if c.exit_code is not None:  # a restart
            c.last_state, c.restarts = c.state, c.restarts + 1
        with self.log_path(c.name).open("ab") as out:
            c.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(PODEXEC), str(spec_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        c.container_id = f"localnode://{c.proc.pid}"
        c.state = {"running": {"startedAt": now()}}
        return True

    def _reap(self, c: Container) -> None:
        """Record a finished process: exit code, reason and termination message."""
        assert c.proc is not None
        _signal_group(c.proc, signal.SIGKILL)  # leftovers die with the container
        code = c.proc.returncode
        exit_code = 128 - code if code < 0 else code
        start_error = self.dir / f"{c.name}.start-error"
        policy = c.spec.get("terminationMessagePolicy", "File")
        if start_error.exists():
            reason, message = "StartError", start_error.read_text()
        else:
            reason = "Completed" if exit_code == 0 else "Error"
            message = termination_message(
                policy, self.dir / f"{c.name}.termination-log", self.log_path(c.name), exit_code
            )
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": c.state.get("running", {}).get("startedAt", now()),
            "finishedAt": now(),
            "containerID": c.container_id,
        }
        if message:
            terminated["message"] = message
        c.state, c.proc = {"terminated": terminated}, None
        c.next_try = time.monotonic() + RETRY_SECONDS

    def _kill(self, grace: float) -> None:
        """SIGTERM every running container's process group, SIGKILL after `grace` seconds."""
        running = [c for c in self.init + self.main if c.proc is not None]
        for c in running:
            assert c.proc is not None
            _signal_group(c.proc, signal.SIGTERM)
        end = time.monotonic() + grace
        for c in running:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(c.proc, signal.SIGKILL)
                c.proc.wait()
            self._reap(c)

    # --- status ---------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> None:
        status = "True" if ok else "False"
        old = self.conditions.get(kind, {})
        since = old["lastTransitionTime"] if old.get("status") == status else now()
        condition = {"type": kind, "status": status, "lastTransitionTime": since}
        if not ok and reason:
            condition.update(reason=reason, message=message)
        self.conditions[kind] = condition

    def _status(self) -> dict[str, Any]:
        terminal = self.phase in TERMINAL
        incomplete = [c.name for c in self.init if not c.succeeded]
        unready = [c.name for c in self.main if c.proc is None]
        not_ready = (
            ("PodCompleted", "")
            if terminal
            else ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]")
        )
        self._condition("PodScheduled", True)
        self._condition("PodReadyToStartContainers", self.volumes is not None and not terminal)
        self._condition(
            "Initialized",
            not incomplete,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        )
        self._condition("ContainersReady", not unready and not terminal, *not_ready)
        self._condition("Ready", not unready and not terminal, *not_ready)
        status: dict[str, Any] = {
            "phase": self.phase,
            "conditions": list(self.conditions.values()),
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.main],
        }
        if self.init:
            status["initContainerStatuses"] = [c.status() for c in self.init]
        if self.reason:
            status.update(reason=self.reason, message=self.message)
        return status

    def _patch(self) -> bool:
        """Write the pod's status; False if that failed and should be tried again."""
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status"
        body = {"metadata": {"uid": self.uid}, "status": self._status()}
        try:
            self.node.kube.call("PATCH", path, body, content_type=STRATEGIC_MERGE)
            return True
        except KubeError as error:
            if error.status == 404:  # the pod is gone: stop
                self._grace = 0
                self._terminate.set()
                return True
            log.warning("status of pod %s/%s: %s", self.namespace, self.pod_name, error)
            return False

    def _end(self, phase: str, reason: str = "", message: str = "") -> None:
        """Report a terminal phase, trying a few times: controllers wait for it."""
        self.phase, self.reason, self.message = (
            phase,
            reason or self.reason,
            message or self.message,
        )
        for _ in range(10):
            if self._patch():
                return
            time.sleep(0.5)
