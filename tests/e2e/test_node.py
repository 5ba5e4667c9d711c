"""The local node runs pods for real: processes, volumes, env, status, deletion.

Each test gets its own namespace; one node serves the whole module. Jobs go
through the real Job controller and garbage collector of the local control plane.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localkube.cluster import LocalCluster
from localkube.controlplane import ControlPlane
from localkube.kubejson import Kube
from localkube.node import LocalNode
from tests.e2e.support import ECHO_IMAGE

T = TypeVar("T")
SLEEPER = "import time; time.sleep(60)"


def wait_for(what: str, check: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return result


@pytest.fixture(scope="module")
def node(cluster: LocalCluster) -> LocalNode:
    assert cluster.node is not None
    return cluster.node


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def batch(api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api, node: LocalNode) -> str:
    name = f"node-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    # Pods are rejected until the serviceaccount controller made "default".
    wait_for(
        "the default service account",
        lambda: (
            core.list_namespaced_service_account(name, field_selector="metadata.name=default").items
        ),
    )
    return name


def container(name: str, *command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", "command": list(command), **extra}


def job(name: str, pod_spec: dict[str, Any], **spec: Any) -> dict[str, Any]:
    pod_spec = {"restartPolicy": "Never", **pod_spec}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}, **spec},
    }


def job_condition(batch: client.BatchV1Api, ns: str, name: str, kind: str) -> Any:
    found = batch.read_namespaced_job(name, ns)
    conditions = found.status.conditions or []
    return next((c for c in conditions if c.type == kind and c.status == "True"), None)


def job_pod(core: client.CoreV1Api, ns: str, name: str) -> client.V1Pod:
    pods = wait_for(
        f"a pod of Job {name}",
        lambda: core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items,
    )
    assert len(pods) == 1
    return pods[0]


def pod_phase(core: client.CoreV1Api, ns: str, name: str, phases: tuple[str, ...]) -> Any:
    pod = core.read_namespaced_pod(name, ns)
    return pod if pod.status.phase in phases else None


def pod_gone(core: client.CoreV1Api, ns: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, ns)
    except ApiException as error:
        return error.status == 404
    return False


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.mark.e2e
def test_init_container_hands_a_file_to_the_container(
    control_plane: ControlPlane,
    node: LocalNode,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    ns: str,
    tmp_path: Path,
) -> None:
    shared = str(tmp_path / "shared")  # missing on the host: the node creates the mount point
    mounts = [{"name": "shared", "mountPath": shared}]
    pod_spec = {
        "volumes": [{"name": "shared", "emptyDir": {}}],
        "initContainers": [
            container("writer", "sh", "-c", f"echo hello > {shared}/greeting", volumeMounts=mounts)
        ],
        "containers": [
            container(
                "reader",
                "sh",
                "-c",
                f"echo reading; printf 'read %s' \"$(cat {shared}/greeting)\""
                " >/dev/termination-log",
                volumeMounts=mounts,
            )
        ],
    }
    created = time.monotonic()
    batch.create_namespaced_job(ns, job("handoff", pod_spec))
    wait_for("the Job to complete", lambda: job_condition(batch, ns, "handoff", "Complete"))
    elapsed = time.monotonic() - created
    pod = job_pod(core, ns, "handoff")

    assert pod.spec.node_name == node.name
    assert pod.status.phase == "Succeeded"
    assert pod.status.pod_ip == "127.0.0.1"
    assert pod.status.start_time is not None
    (init,) = pod.status.init_container_statuses
    assert init.state.terminated.exit_code == 0
    assert init.state.terminated.reason == "Completed"
    (main,) = pod.status.container_statuses
    assert main.state.terminated.reason == "Completed"
    assert main.state.terminated.message == "read hello"
    assert main.container_id.startswith("localnode://")
    conditions = {c.type: c for c in pod.status.conditions}
    assert conditions["Initialized"].status == "True"
    assert conditions["Ready"].status == "False"
    assert conditions["Ready"].reason == "PodCompleted"
    assert node.logs(ns, pod.metadata.name, "reader") == "reading\n"
    # `kubectl logs` goes through the API server to the node's log endpoint.
    kubectl = [str(control_plane.bin_dir / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}"]
    logs = [*kubectl, "-n", ns, "logs", pod.metadata.name, "-c", "writer"]
    assert subprocess.run(logs, check=True, capture_output=True, text=True).stdout == ""
    logs[-1] = "reader"
    assert subprocess.run(logs, check=True, capture_output=True, text=True).stdout == "reading\n"
    # The emptyDir was mounted in the pod's private mount namespace only.
    assert Path(shared).is_dir()
    assert not (Path(shared) / "greeting").exists()
    print(f"Job created -> Complete in {elapsed:.2f}s")


ENV_SCRIPT = """
import json, os, socket, sys
out = {"env": {k: os.environ.get(k) for k in sys.argv[1].split(",")}, "argv": sys.argv[2:]}
out["cwd"] = os.getcwd()
out["hostname"] = socket.gethostname()
out["config"] = open("conf/mode.txt").read()
try:
    open("conf/new", "w")
except OSError as error:
    out["readonly"] = error.strerror
open(os.environ["DATA"] + "/out.txt", "w").write("saved")
out["token"] = open(os.environ["CREDS"] + "/token").read()
out["host"] = open(os.environ["HOST"] + "/hello.txt").read()
try:
    open(os.environ["RESULTS"] + "/x", "w")
except OSError as error:
    out["results"] = error.strerror
json.dump(out, open("/dev/termination-log", "w"))
"""


@pytest.mark.e2e
def test_env_volumes_and_expansion(
    node: LocalNode, core: client.CoreV1Api, batch: client.BatchV1Api, ns: str, tmp_path: Path
) -> None:
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "creds"}, "stringData": {"token": "s3"}}
    )
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "settings"}, "data": {"mode": "fast", "other": "x"}}
    )
    config_dir, data_dir = str(tmp_path / "config"), str(tmp_path / "data")
    results_dir, creds_dir = str(tmp_path / "results"), str(tmp_path / "creds")
    host_dir, host_mount = tmp_path / "on-host", str(tmp_path / "host")
    host_dir.mkdir()
    (host_dir / "hello.txt").write_text("from the host")
    names = "SECRET,CONFIG,POD,NAMESPACE,NODE,POD_IP,GREETING,ESCAPED,OPTIONAL,HOSTNAME"
    env = [
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "CONFIG", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "GREETING", "value": "hi $(POD) in $(NAMESPACE)"},
        {"name": "ESCAPED", "value": "$$(POD)"},
        {
            "name": "OPTIONAL",
            "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": True}},
        },
        {"name": "DATA", "value": data_dir},
        {"name": "RESULTS", "value": results_dir},
        {"name": "CREDS", "value": creds_dir},
        {"name": "HOST", "value": host_mount},
    ]
    main = container(
        "main",
        "python",
        "-c",
        ENV_SCRIPT,
        names,
        "$(POD)",
        "$$(POD)",
        "$(UNKNOWN)",
        env=env,
        workingDir=config_dir,
        volumeMounts=[
            {"name": "settings", "mountPath": config_dir},
            {"name": "data", "mountPath": data_dir, "subPath": "run-1"},
            {"name": "data", "mountPath": results_dir, "readOnly": True},
            {"name": "creds", "mountPath": creds_dir},
            {"name": "host", "mountPath": host_mount},
        ],
    )
    volumes = [
        {
            "name": "settings",
            "configMap": {"name": "settings", "items": [{"key": "mode", "path": "conf/mode.txt"}]},
        },
        {"name": "data", "persistentVolumeClaim": {"claimName": "results"}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "host", "hostPath": {"path": str(host_dir), "type": "Directory"}},
    ]
    batch.create_namespaced_job(ns, job("env", {"containers": [main], "volumes": volumes}))
    wait_for("the Job to complete", lambda: job_condition(batch, ns, "env", "Complete"))
    pod = job_pod(core, ns, "env")
    out = json.loads(pod.status.container_statuses[0].state.terminated.message)

    name = pod.metadata.name
    assert out["env"] == {
        "SECRET": "s3",
        "CONFIG": "fast",
        "POD": name,
        "NAMESPACE": ns,
        "NODE": node.name,
        "POD_IP": "127.0.0.1",
        "GREETING": f"hi {name} in {ns}",
        "ESCAPED": "$(POD)",
        "OPTIONAL": None,
        "HOSTNAME": name,
    }
    assert out["argv"] == [name, "$(POD)", "$(UNKNOWN)"]
    assert out["cwd"] == config_dir
    assert out["hostname"] == name
    assert out["config"] == "fast"
    assert out["readonly"] == "Read-only file system"
    assert out["results"] == "Read-only file system"
    assert out["token"] == "s3"
    assert out["host"] == "from the host"
    claim = node.work_dir / "pvc" / ns / "results" / "run-1" / "out.txt"
    assert claim.read_text() == "saved"


@pytest.mark.e2e
def test_images_and_config_errors(node: LocalNode, core: client.CoreV1Api, ns: str) -> None:
    def pod(name: str, spec: dict[str, Any]) -> None:
        body = {
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [spec]},
        }
        core.create_namespaced_pod(ns, body)

    def waiting(name: str) -> Any:
        statuses = core.read_namespaced_pod(name, ns).status.container_statuses or []
        state = statuses[0].state.waiting if statuses else None
        return state if state and state.reason not in ("PodInitializing", None) else None

    # No command: the image's local entry point from the node's table, plus args.
    pod("echo", {"name": "main", "image": f"{ECHO_IMAGE}:v2", "args": ["a", "b"]})
    # No entry point for this image: like an image that cannot be pulled.
    pod("unknown", {"name": "main", "image": "example.com/unknown:v1"})
    # A missing Secret: the container waits (and the kubelet retries) until it exists.
    ref = {"secretKeyRef": {"name": "later", "key": "token"}}
    pod("later", container("main", "true", env=[{"name": "TOKEN", "valueFrom": ref}]))

    # A command that does not exist: the runtime cannot start it.
    pod("missing", container("main", "no-such-program-here"))

    done = wait_for("pod echo to succeed", lambda: pod_phase(core, ns, "echo", ("Succeeded",)))
    assert done.status.container_statuses[0].state.terminated.message == "a b"
    unknown = wait_for("pod unknown to wait", lambda: waiting("unknown"))
    assert unknown.reason == "ErrImagePull"
    assert unknown.message == "image example.com/unknown:v1 has no local entry point"
    later = wait_for("pod later to wait", lambda: waiting("later"))
    assert later.reason == "CreateContainerConfigError"
    assert later.message == 'secret "later" not found'
    assert core.read_namespaced_pod("later", ns).status.phase == "Pending"
    missing = wait_for("pod missing to fail", lambda: pod_phase(core, ns, "missing", ("Failed",)))
    terminated = missing.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (128, "StartError")
    assert terminated.message == 'exec: "no-such-program-here": No such file or directory'
    core.create_namespaced_secret(ns, {"metadata": {"name": "later"}, "stringData": {"token": "t"}})
    wait_for("pod later to succeed", lambda: pod_phase(core, ns, "later", ("Succeeded",)))


@pytest.mark.e2e
def test_failed_container_reports_its_log_tail(
    node: LocalNode, core: client.CoreV1Api, batch: client.BatchV1Api, ns: str
) -> None:
    lines = [f"line {i:03d}: {'x' * 40}\n" for i in range(1, 121)]
    script = "for i in $(seq 1 120); do printf 'line %03d: %s\\n' $i " + "x" * 40 + "; done; exit 3"
    main = container("main", "sh", "-c", script, terminationMessagePolicy="FallbackToLogsOnError")
    batch.create_namespaced_job(ns, job("fails", {"containers": [main]}))
    failed = wait_for("the Job to fail", lambda: job_condition(batch, ns, "fails", "Failed"))
    assert failed.reason == "BackoffLimitExceeded"

    pod = job_pod(core, ns, "fails")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.message == "".join(lines[-80:])[-2048:]
    assert node.logs(ns, pod.metadata.name, "main") == "".join(lines)


@pytest.mark.e2e
def test_job_deadline_stops_the_process(
    node: LocalNode, core: client.CoreV1Api, batch: client.BatchV1Api, ns: str
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    main = container("main", "python", "-c", SLEEPER, marker)
    batch.create_namespaced_job(ns, job("slow", {"containers": [main]}, activeDeadlineSeconds=2))
    pod = job_pod(core, ns, "slow").metadata.name
    wait_for("the process to start", lambda: processes_with(marker))
    failed = wait_for("the Job to fail", lambda: job_condition(batch, ns, "slow", "Failed"))
    assert failed.reason == "DeadlineExceeded"
    wait_for("the process to end", lambda: not processes_with(marker), timeout=10)
    wait_for("the pod to be removed", lambda: pod_gone(core, ns, pod), timeout=10)


@pytest.mark.e2e
def test_pod_deadline_fails_the_pod(node: LocalNode, core: client.CoreV1Api, ns: str) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    spec = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": 1,
        "containers": [container("main", "python", "-c", SLEEPER, marker)],
    }
    core.create_namespaced_pod(ns, {"metadata": {"name": "slow"}, "spec": spec})
    pod = wait_for("the pod to fail", lambda: pod_phase(core, ns, "slow", ("Failed",)))
    assert pod.status.reason == "DeadlineExceeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (143, "Error")  # SIGTERM
    assert not processes_with(marker)


@pytest.mark.e2e
def test_deleting_a_job_stops_its_process(
    node: LocalNode, core: client.CoreV1Api, batch: client.BatchV1Api, ns: str
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    main = container("main", "python", "-c", SLEEPER, marker)
    batch.create_namespaced_job(ns, job("doomed", {"containers": [main]}))
    pod = job_pod(core, ns, "doomed").metadata.name
    wait_for("the pod to run", lambda: pod_phase(core, ns, pod, ("Running",)))
    # Running is reported once the wrapper is spawned; the exec of the command follows.
    wait_for("the process to start", lambda: processes_with(marker))

    batch.delete_namespaced_job("doomed", ns, propagation_policy="Background")
    wait_for("the process to end", lambda: not processes_with(marker), timeout=10)
    wait_for("the pod to be removed", lambda: pod_gone(core, ns, pod), timeout=10)


@pytest.mark.e2e
def test_force_deleting_a_pod_stops_its_process(
    node: LocalNode, core: client.CoreV1Api, ns: str
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    main = container("main", "python", "-c", SLEEPER, marker)
    spec = {"restartPolicy": "Never", "containers": [main]}
    core.create_namespaced_pod(ns, {"metadata": {"name": "forced"}, "spec": spec})
    wait_for("the pod to run", lambda: pod_phase(core, ns, "forced", ("Running",)))
    # Running is reported once the wrapper is spawned; the exec of the command follows.
    wait_for("the process to start", lambda: processes_with(marker))
    core.delete_namespaced_pod("forced", ns, grace_period_seconds=0)  # gone at once
    wait_for("the process to end", lambda: not processes_with(marker), timeout=10)


@pytest.mark.e2e
def test_on_failure_restarts_the_container(
    node: LocalNode, core: client.CoreV1Api, ns: str, tmp_path: Path
) -> None:
    state = str(tmp_path / "state")
    script = f"if [ -e {state}/once ]; then echo second; exit 0; fi; touch {state}/once; exit 1"
    spec = {
        "restartPolicy": "OnFailure",
        "volumes": [{"name": "state", "emptyDir": {}}],
        "containers": [
            container(
                "main", "sh", "-c", script, volumeMounts=[{"name": "state", "mountPath": state}]
            )
        ],
    }
    core.create_namespaced_pod(ns, {"metadata": {"name": "flaky"}, "spec": spec})
    pod = wait_for("the pod to succeed", lambda: pod_phase(core, ns, "flaky", ("Succeeded",)))
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    assert status.state.terminated.exit_code == 0
    assert node.logs(ns, "flaky", "main") == "second\n"


@pytest.mark.e2e
def test_node_relists_after_its_watch_breaks(
    node: LocalNode, core: client.CoreV1Api, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    wait_for("a running watch", lambda: node._watch_handle)
    Kube.interrupt(node._watch_handle)  # as if the connection dropped
    spec = {"restartPolicy": "Never", "containers": [container("main", "true")]}
    core.create_namespaced_pod(ns, {"metadata": {"name": "after"}, "spec": spec})
    wait_for("the pod to succeed", lambda: pod_phase(core, ns, "after", ("Succeeded",)))
    assert "relisting" in caplog.text
    nodes = core.read_node(node.name)
    ready = next(c for c in nodes.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert nodes.status.daemon_endpoints.kubelet_endpoint.port > 0
