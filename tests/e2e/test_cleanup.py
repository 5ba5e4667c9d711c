"""An interrupted local cluster leaves nothing behind.

A process holding a cluster (as pytest holds the session's, or `make up` its own) is
interrupted with Ctrl-C (SIGINT) or SIGTERM while a pod runs on its node. Afterwards no
process of the cluster or its pods runs, nothing stays mounted below its folder, and the
host is as it was: kernel settings, the node's address, its bridge, its cgroups. The
cluster here takes the second network, so it can run beside the session's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localkube import realnode
from localkube.cluster import ROOT

pytestmark = pytest.mark.e2e
NET = realnode.SECOND
# Values kubelet never sets (it sets 1, 10 and 1), so that a restore shows.
BEFORE = {"vm/overcommit_memory": "0", "kernel/panic": "0", "kernel/panic_on_oops": "0"}
SLEEPER = "3601"  # the pod's `sleep` argument: found in /proc while it runs
DRIVER = f"""
import sys, time
from pathlib import Path
from localkube import images, realnode
from localkube.cluster import LocalCluster

with LocalCluster(Path(sys.argv[1]), network=realnode.SECOND) as cluster:
    cluster.kubectl("create", "namespace", "sleepy")
    for _ in range(300):
        if cluster.kubectl("get", "sa", "default", "-n", "sleepy", check=False).returncode == 0:
            break
        time.sleep(0.2)
    cluster.kubectl("run", "sleeper", "-n", "sleepy", "--image", images.BASE_IMAGE,
                    "--restart=Never", "--", "sleep", "{SLEEPER}")
    cluster.kubectl("wait", "-n", "sleepy", "pod/sleeper", "--for=condition=Ready",
                    "--timeout=120s")
    print("node", cluster.kubelet.dir, flush=True)
    print("ready", flush=True)
    while True:
        time.sleep(1)
"""


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


def run_until_ready(state: Path) -> tuple[subprocess.Popen[str], str]:
    """The driver, running, once its pod runs; and its node's folder (containerd's and
    kubelet's own files)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(state)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "hack")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.strip() == "ready":
            [node] = [x.split()[1] for x in output if x.startswith("node ")]
            return proc, node
    proc.wait()
    raise AssertionError(f"the cluster did not come up:\n{''.join(output)[-3000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_cluster_stops_everything_and_restores_the_host(
    tmp_path: Path, host_settings: None, sig: signal.Signals
) -> None:
    state = tmp_path / "cluster"
    proc, node = run_until_ready(state)
    try:
        # While it runs: kubelet's settings, the pod's process, the node's mounts.
        assert {key: sysctl(key) for key in BEFORE} != BEFORE
        assert processes_mentioning(f"sleep {SLEEPER}")
        assert any(node in line for line in Path("/proc/mounts").read_text().splitlines())
        started = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=120)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != -signal.SIGKILL, "it had to be killed"
    assert processes_mentioning(str(state), node, f"sleep {SLEEPER}") == []
    assert [m for m in Path("/proc/mounts").read_text().splitlines() if node in m] == []
    assert not Path(node).exists()
    assert {key: sysctl(key) for key in BEFORE} == BEFORE
    lo = subprocess.run(["ip", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    assert f"{NET.node_ip}/32" not in lo.stdout
    link = subprocess.run(["ip", "link", "show", NET.bridge], capture_output=True, text=True)
    assert link.returncode != 0, f"the bridge {NET.bridge} is still there"
    assert [d for d in Path("/sys/fs/cgroup").glob(f"*/{NET.name}")] == []
    # Only the logs stay, for reading after a failure.
    assert sorted(p.name for p in state.rglob("*")) == [
        "containerd.log",
        "kubelet.log",
        "operator.log",
    ]
    assert stopped_in < 60, f"stopping took {stopped_in:.0f} s"
