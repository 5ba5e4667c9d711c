"""A real node on this machine: containerd and kubelet, running our real images.

containerd (Debian's, with runc) keeps its root, state and socket under our folder;
kubelet (built with the other binaries) registers the node `localnode` and runs pods
through containerd's CRI plugin. Pods get addresses from the CNI bridge plugin
(`evalbr0`, POD_SUBNET) without touching iptables. The node's address is NODE_IP, put on
the loopback interface so that it is this machine's own and reaches nothing outside; pods
reach services on the host there (model services of tests and the demo listen on it).

kubelet changes some kernel settings at every start (vm.overcommit_memory, kernel.panic,
kernel.panic_on_oops): they are saved first and restored on stop, as is the address. Stop
always kills every container, unmounts what containerd and kubelet mounted below our
folder, and removes the bridge.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from localkube.controlplane import (
    ControlPlaneError,
    _die_with_parent,
    free_port,
    signals_held,
    stop_process,
)

NODE_NAME: Final = "localnode"
NODE_IP: Final = "198.51.100.10"
POD_SUBNET: Final = "198.18.0.0/24"
POD_GATEWAY: Final = "198.18.0.1"
BRIDGE: Final = "evalbr0"
SYSCTLS: Final = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
CNI_BIN: Final = "/usr/lib/cni"


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ControlPlaneError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class Network:
    """One node's names and addresses: a second node on the same machine takes others."""

    name: str = NODE_NAME
    node_ip: str = NODE_IP
    subnet: str = POD_SUBNET
    gateway: str = POD_GATEWAY
    bridge: str = BRIDGE


FIRST: Final = Network()
SECOND: Final = Network("localnode-2", "198.51.100.11", "198.18.1.0/24", "198.18.1.1", "evalbr1")


class RealNode:
    def __init__(
        self, bin_dir: Path, kubeconfig: Path, log_dir: Path, network: Network = FIRST
    ) -> None:
        self.net = network
        self.bin_dir = bin_dir
        self.kubeconfig = kubeconfig
        self.logs = log_dir.resolve()
        # containerd's and kubelet's own files (roots, state, sockets, CNI) go to a short
        # folder of the node's, as a unix socket's path may not exceed 104 bytes, which a
        # deep state folder (a test's tmp_path) does. Their logs go to `log_dir`.
        self.dir = Path(tempfile.mkdtemp(prefix="evalnode-"))
        self.socket = self.dir / "containerd.sock"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._saved: dict[str, str] = {}
        # Whether the address was there before: known before it is added, so an interrupt
        # between adding it and noting so cannot leave it behind.
        self._address_was_there: bool | None = None
        self.kubelet_port = 0

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, images: dict[str, Path], ready_timeout: float = 90.0) -> RealNode:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._save_sysctls()
            self._add_address()
            self._start_containerd()
            for archive in images.values():
                self.load(archive)
            self._write_cni()
            self._make_cgroups()
            self._start_kubelet()
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> RealNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Idempotent, and whole even when a step fails: each step runs whatever the one
        before it did (a containerd that no longer answers must not leave its shims, its
        mounts and the node's address behind). Stop signals wait until it is done."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("stop kubelet", lambda: self._terminate("kubelet")),
            ("kill the containers", self._kill_containers),
            ("stop containerd", lambda: self._terminate("containerd")),
            ("kill what is left", self._kill_leftovers),
            ("unmount", lambda: self._unmount_below(self.dir)),
            ("remove the cgroups", self._remove_cgroups),
            ("remove the bridge", lambda: _sh("ip", "link", "del", self.net.bridge, check=False)),
            ("remove the address", self._remove_address),
            ("restore the kernel settings", self._restore_sysctls),
            ("remove the node's folder", lambda: shutil.rmtree(self.dir, ignore_errors=True)),
        ]
        failed = []
        with signals_held():
            for what, step in steps:
                try:
                    step()
                except Exception as e:  # the other steps must still run
                    failed.append(f"{what}: {e}")
        if failed:
            raise ControlPlaneError("stopping the node: " + "; ".join(failed))

    # --- host settings ---------------------------------------------------------------------
    def _save_sysctls(self) -> None:
        for key in SYSCTLS:
            self._saved[key] = (Path("/proc/sys") / key).read_text().strip()

    def _restore_sysctls(self) -> None:
        for key, value in self._saved.items():
            with contextlib.suppress(OSError):  # nothing more can be done here
                (Path("/proc/sys") / key).write_text(value)
        self._saved.clear()

    def _add_address(self) -> None:
        self._address_was_there = has_node_address(self.net.node_ip)
        add_node_address(self.net.node_ip)

    def _remove_address(self) -> None:
        if self._address_was_there is False:
            remove_node_address(self.net.node_ip)
        self._address_was_there = None

    # --- cgroups: the node's pods live below /<node name> in every hierarchy -------------
    def _cgroup_dirs(self) -> list[Path]:
        root = Path("/sys/fs/cgroup")
        return [d / self.net.name for d in sorted(root.iterdir()) if d.is_dir()]

    def _make_cgroups(self) -> None:
        for folder in self._cgroup_dirs():
            with contextlib.suppress(OSError):  # a hierarchy that takes none (read-only)
                folder.mkdir(exist_ok=True)

    def _remove_cgroups(self) -> None:
        for folder in self._cgroup_dirs():
            if not folder.exists():
                continue
            # Children first: a cgroup folder goes only when empty of cgroups and tasks.
            for child in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()

    # --- containerd -----------------------------------------------------------------------
    def _start_containerd(self) -> None:
        root = self.dir / "containerd"
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.toml"
        config.write_text(
            f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = "{self.dir / "debug.sock"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # This machine lacks CAP_SYS_RESOURCE: runc cannot lower the sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.dir / "cni" / "conf"}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
"""
        )
        self._spawn("containerd", ["containerd", "--config", str(config)])
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            self._check_alive("containerd")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"containerd did not start:\n{self._tail('containerd')}")
            time.sleep(0.1)

    def load(self, archive: Path) -> None:
        """Import a docker-archive image (also while the node runs)."""
        self.ctr("images", "import", "--no-unpack=false", str(archive))

    def tag(self, image: str, *aliases: str) -> None:
        """Give a loaded image more names (as the tags a chart or an example uses)."""
        source = _qualified(image)
        for alias in aliases:
            self.ctr("images", "tag", "--force", source, _qualified(alias))

    def image_names(self) -> list[str]:
        """The images the node has, by name (as an EvalTask may name them)."""
        names = []
        for line in self.ctr("images", "list", "-q").split():
            if not line.startswith("sha256:"):
                names.append(line.removeprefix("docker.io/library/").removeprefix("docker.io/"))
        return sorted(names)

    def ctr(self, *args: str) -> str:
        return _sh("ctr", "--address", str(self.socket), "-n", "k8s.io", *args).stdout

    def _kill_containers(self) -> None:
        """Through containerd, while it runs: its tasks end as it knows them."""
        if "containerd" not in self._procs or self._procs["containerd"].poll() is not None:
            return
        for line in self.ctr("tasks", "list", "-q").split():
            _sh(
                "ctr",
                "--address",
                str(self.socket),
                "-n",
                "k8s.io",
                "tasks",
                "kill",
                "-s",
                "SIGKILL",
                line,
                check=False,
            )
        deadline = time.monotonic() + 10
        while self.ctr("tasks", "list", "-q").split() and time.monotonic() < deadline:
            time.sleep(0.2)

    def _kill_leftovers(self, timeout: float = 15.0) -> None:
        """SIGKILL every process in the node's cgroups (the pods' processes, whoever
        started them) and every process naming the node's folder (containerd's shims,
        which live outside those cgroups and outlive containerd), until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            pids = node_processes(self._cgroup_dirs(), f"{self.dir}/")
            if not pids:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"processes {sorted(pids)} outlived SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    # --- CNI and kubelet ------------------------------------------------------------------
    def _write_cni(self) -> None:
        conf = self.dir / "cni" / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "10-eval.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "evalnet",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": self.net.bridge,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(self.dir / "cni" / "ipam"),
                                "ranges": [
                                    [{"subnet": self.net.subnet, "gateway": self.net.gateway}]
                                ],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "loopback"},
                    ],
                },
                indent=2,
            )
        )

    def _start_kubelet(self) -> None:
        root = self.dir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        self.kubelet_port = free_port()
        config = root / "config.json"  # JSON is YAML
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "cgroupDriver": "cgroupfs",
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "containerRuntimeEndpoint": f"unix://{self.socket}",
                    "address": self.net.node_ip,
                    # Pods' cgroups under a root of this node's own: two nodes never meet.
                    "cgroupRoot": f"/{self.net.name}",
                    "port": self.kubelet_port,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": free_port(),
                    "readOnlyPort": 0,
                    # Pod logs of this node's own: in the shared /var/log/pods, the other
                    # node's kubelet removes them as orphans, and they outlive the node.
                    "podLogsDir": str(self.dir / "pod-logs"),
                    "makeIPTablesUtilChains": False,
                    # Local images have no registry to come back from: never collect them.
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {
                        "memory.available": "100Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                        "nodefs.inodesFree": "1%",
                    },
                    # Only the API server (on this machine) talks to it, for logs and exec.
                    "authentication": {
                        "anonymous": {"enabled": True},
                        "webhook": {"enabled": False},
                    },
                    "authorization": {"mode": "AlwaysAllow"},
                    "serializeImagePulls": False,
                    "resolvConf": "",
                }
            )
        )
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={self.kubeconfig}",
                f"--hostname-override={self.net.name}",
                f"--node-ip={self.net.node_ip}",
                f"--root-dir={root / 'root'}",
                f"--cert-dir={root / 'pki'}",
                "--v=1",
            ],
        )

    def _wait_ready(self, timeout: float) -> None:
        kubectl = str(self.bin_dir / "kubectl")
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive("containerd")
            self._check_alive("kubelet")
            result = subprocess.run(
                [
                    kubectl,
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "get",
                    "node",
                    self.net.name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                ],
                capture_output=True,
                text=True,
            )
            last = result.stdout.strip() or result.stderr.strip()
            if last == "True":
                return
            time.sleep(0.5)
        raise ControlPlaneError(
            f"node not Ready after {timeout:.0f}s ({last}):\n{self._tail('kubelet')}"
        )

    # --- processes and mounts ---------------------------------------------------------------
    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        with self.log_path(name).open("ab") as log:
            self._procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _check_alive(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{self._tail(name)}")

    def _tail(self, name: str, lines: int = 30) -> str:
        path = self.log_path(name)
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def _terminate(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        stop_process(proc)

    @staticmethod
    def _unmount_below(folder: Path) -> None:
        prefix = str(folder.resolve())
        for _ in range(3):
            mounts = [
                line.split()[1].encode().decode("unicode_escape")
                for line in Path("/proc/mounts").read_text().splitlines()
            ]
            mine = sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True)
            if not mine:
                return
            for mount in mine:
                subprocess.run(["umount", "-l", mount], capture_output=True)


def node_processes(cgroups: list[Path], folder: str) -> set[int]:
    """Live processes in any of `cgroups` (or below), or whose command line names
    `folder`; never this process."""
    pids: set[int] = set()
    for root in cgroups:
        for procs in root.rglob("cgroup.procs") if root.is_dir() else ():
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in procs.read_text().split())
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if folder.encode() in cmdline.read_bytes():
                pids.add(int(cmdline.parent.name))
    pids.discard(os.getpid())
    # Zombies have exited already: only their parent's wait is missing.
    return {pid for pid in pids if _state(pid) not in ("Z", "")}


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def has_node_address(address: str = NODE_IP) -> bool:
    return f"{address}/32" in _sh("ip", "-4", "addr", "show", "dev", "lo").stdout


def add_node_address(address: str = NODE_IP) -> bool:
    """Put a node's address on the loopback interface; True when this call added it."""
    shown = _sh("ip", "-4", "addr", "show", "dev", "lo").stdout
    if f"{address}/32" in shown:
        return False
    _sh("ip", "addr", "add", f"{address}/32", "dev", "lo")
    return True


def remove_node_address(address: str = NODE_IP) -> None:
    _sh("ip", "addr", "del", f"{address}/32", "dev", "lo", check=False)


def _qualified(image: str) -> str:
    """containerd's full name of an image reference ("eval-operator/runner:dev" ->
    "docker.io/eval-operator/runner:dev"), as kubelet resolves it."""
    first = image.split("/", 1)[0]
    if "/" not in image:
        return f"docker.io/library/{image}"
    if "." in first or ":" in first or first == "localhost":
        return image
    return f"docker.io/{image}"


def pod_address_of_host() -> str:
    """Where pods reach a service that the host runs (it listens on this address)."""
    return NODE_IP


def environment_ok() -> str | None:
    """None when this machine can run the real node, else what is missing."""
    if os.geteuid() != 0:
        return "the real node needs root"
    for tool in ("containerd", "runc", "ctr", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (`make deps` installs it)"
    if not Path(CNI_BIN, "bridge").exists():
        return "the CNI plugins are not installed (`make deps`: containernetworking-plugins)"
    return None
