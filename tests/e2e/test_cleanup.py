"""An interrupted local cluster leaves nothing behind, whenever the signal lands.

A process holding a cluster is interrupted: as pytest holds the session's (Ctrl-C), and as
`make up` holds its own (`make down` sends SIGTERM; that case also reads what `make up`
prints). The signal lands at several moments: while the control plane starts, while the
node loads its images, while kubelet starts, once a pod runs on the node, and twice (the
second while it stops). Afterwards no process of the cluster or its pods runs, nothing
stays mounted below its folders, and the host is as it was: kernel settings, the node's
address, its bridge, its cgroups. The cluster here takes the second network, so it can run
beside the session's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localkube import images, realnode
from localkube.cluster import ROOT, binaries

pytestmark = pytest.mark.e2e
NET = realnode.SECOND
# Values kubelet never sets (it sets 1, 10 and 1), so that a restore shows.
BEFORE = {"vm/overcommit_memory": "0", "kernel/panic": "0", "kernel/panic_on_oops": "0"}
SLEEPER = "3601"  # the pod's `sleep` argument: found in /proc while it runs
NODE_LINE = "the node's own files (containerd, kubelet): "
# A process holding a cluster as pytest holds the session's: a `with` block.
HOLDER = f"""
import signal, sys, time
from pathlib import Path
# Ctrl-C as in a terminal, also where this run was started with SIGINT ignored (a
# background job of a shell without job control): Python then keeps it ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
from localkube import realnode
from localkube.cluster import LocalCluster

with LocalCluster(Path(sys.argv[1]), network=realnode.SECOND) as cluster:
    print("{NODE_LINE}" + str(cluster.kubelet.dir), flush=True)
    print(f"export KUBECONFIG={{cluster.kubeconfig}}", flush=True)
    while True:
        time.sleep(1)
"""
# (how it is started, the signal it gets): Ctrl-C in a test run, SIGTERM from `make down`.
HOLDERS = {
    "pytest-ctrl-c": (["-c", HOLDER], signal.SIGINT),
    "make-up-then-down": (["-m", "localkube", "up", "--second-network", "--state"], signal.SIGTERM),
}


def sysctl(key: str) -> str:
    return (Path("/proc/sys") / key).read_text().strip()


@pytest.fixture
def host_settings() -> Iterator[None]:
    """The kernel settings kubelet changes, set to values of ours; put back afterwards."""
    missing = realnode.environment_ok()
    assert missing is None, f"the real node cannot run here: {missing}"
    saved = {key: sysctl(key) for key in BEFORE}
    for key, value in BEFORE.items():
        (Path("/proc/sys") / key).write_text(value)
    try:
        yield
    finally:
        for key, value in saved.items():
            (Path("/proc/sys") / key).write_text(value)


def processes_mentioning(*words: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if any(word in argv for word in words):
            found.append(f"{cmdline.parent.name}: {argv}")
    return found


# When the signal is sent: once the file named appears below the state folder (the
# component's log: it was just started), or once a pod runs on the node ("ready").
MOMENTS = {
    "control-plane-starting": "kube-apiserver.log",
    "node-loading-images": "containerd.log",
    "kubelet-starting": "kubelet.log",
    "pod-running": "ready",
    "twice-while-stopping": "ready",
}


def start_holder(argv: list[str], state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *argv, str(state)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "hack")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_file(proc: subprocess.Popen[str], state: Path, name: str) -> None:
    deadline = time.monotonic() + 180
    while not any(state.rglob(name)):
        assert proc.poll() is None, f"it exited before {name} appeared"
        assert time.monotonic() < deadline, f"{name} never appeared below {state}"
        time.sleep(0.05)


def run_until_ready(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Once the cluster is up and a pod runs on its node: its node's folder, and
    everything it printed."""
    assert proc.stdout is not None
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("export KUBECONFIG="):
            [node] = [x[len(NODE_LINE) :].strip() for x in output if x.startswith(NODE_LINE)]
            run_sleeper(line.split("=", 1)[1].strip())
            return node, "".join(output)
    proc.wait()
    raise AssertionError(f"the cluster did not come up:\n{''.join(output)[-3000:]}")


def node_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("evalnode-*"))


def run_sleeper(kubeconfig: str) -> None:
    kubectl = [str(binaries() / "kubectl"), "--kubeconfig", kubeconfig]

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*kubectl, *args], capture_output=True, text=True, check=check)

    run("create", "namespace", "sleepy")
    deadline = time.monotonic() + 60
    while run("get", "sa", "default", "-n", "sleepy", check=False).returncode != 0:
        assert time.monotonic() < deadline, "no default service account"
        time.sleep(0.2)
    pod = ["sleeper", "-n", "sleepy", f"--image={images.BASE_IMAGE}", "--restart=Never"]
    run("run", *pod, "--", "sleep", SLEEPER)
    run("wait", "-n", "sleepy", "pod/sleeper", "--for=condition=Ready", "--timeout=120s")


CASES = [
    pytest.param(holder, moment, id=f"{name}-{moment}")
    for name, holder in HOLDERS.items()
    for moment in MOMENTS
    # `make up` reaches each starting moment by the same code as pytest's holder: its
    # own cases are the ones where what it does differs (its signal handler, its output).
    if name == "pytest-ctrl-c"
    or moment in ("node-loading-images", "pod-running", "twice-while-stopping")
]


@pytest.mark.parametrize(("holder", "moment"), CASES)
def test_an_interrupted_cluster_stops_everything_and_restores_the_host(
    tmp_path: Path, host_settings: None, holder: tuple[list[str], signal.Signals], moment: str
) -> None:
    argv, sig = holder
    state = tmp_path / "state"
    nodes_before = node_folders()
    proc = start_holder(argv, state)
    node, printed = "", ""
    try:
        if MOMENTS[moment] == "ready":
            node, printed = run_until_ready(proc)
            # While it runs: kubelet's settings, the pod's process, the node's mounts.
            assert {key: sysctl(key) for key in BEFORE} != BEFORE
            assert processes_mentioning(f"sleep {SLEEPER}")
            assert any(node in line for line in Path("/proc/mounts").read_text().splitlines())
        else:
            wait_for_file(proc, state, MOMENTS[moment])
        # The node's folders made by this cluster (none yet while the control plane starts).
        ours = {str(n) for n in node_folders() - nodes_before} | ({node} if node else set())
        started = time.monotonic()
        proc.send_signal(sig)
        if moment.startswith("twice"):
            time.sleep(0.5)  # it is stopping now: the second signal lands in the middle
            proc.send_signal(sig)
        proc.communicate(timeout=120)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != -signal.SIGKILL, "it had to be killed"
    assert [str(n) for n in node_folders() - nodes_before] == [], "a node's folder is left"
    # containerd's shims name the node's folder (their socket), and outlive containerd.
    words = [str(state), f"sleep {SLEEPER}", *(folder + "/" for folder in ours)]
    assert processes_mentioning(*words) == []
    mounts = Path("/proc/mounts").read_text().splitlines()
    assert [m for m in mounts if any(folder in m for folder in ours)] == []
    assert {key: sysctl(key) for key in BEFORE} == BEFORE
    lo = subprocess.run(["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    assert f"{NET.node_ip}/32" not in lo.stdout
    link = subprocess.run(["ip", "link", "show", NET.bridge], capture_output=True, text=True)
    assert link.returncode != 0, f"the bridge {NET.bridge} is still there"
    assert [d for d in Path("/sys/fs/cgroup").glob(f"*/{NET.name}")] == []
    # The pod's logs went with the node (not left in the host's /var/log/pods).
    assert list(Path("/var/log/pods").glob("sleepy_sleeper_*")) == []
    # Only the logs stay, for reading after a failure (and `make up`'s kubeconfig).
    left = {p.name for p in state.rglob("*") if p.is_file()} if state.exists() else set()
    assert left - {"kubeconfig"} <= {"containerd.log", "kubelet.log", "operator.log"}
    assert stopped_in < 60, f"stopping took {stopped_in:.0f} s"
    if moment == "pod-running":
        assert left - {"kubeconfig"} == {"containerd.log", "kubelet.log", "operator.log"}
    if "up" in argv and moment == "pod-running":
        # `make up` said what the node has, by the names an EvalTask uses, and where pods
        # reach model services on this machine.
        for image in ("runner:dev", "runner:0.1.0", "operator:dev", "operator:0.1.0"):
            assert f"  eval-operator/{image}\n" in printed, printed
        assert f"  {images.BASE_IMAGE}\n" in printed, printed
        assert f"pods reach services on this machine at {NET.node_ip} " in printed
