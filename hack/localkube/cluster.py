"""A whole local cluster: control plane, a real node, the CRDs and the operator.

One object for everything `make up`, `make demo` and the end-to-end tests need. The
operator runs as its own process, as it would in a cluster, against the admin
kubeconfig; tests can kill and restart it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import yaml

from localkube import images as images_mod
from localkube import realnode
from localkube.controlplane import ControlPlane, free_port, signals_held
from localkube.realnode import RealNode

ROOT: Final = Path(__file__).resolve().parents[2]
APP_VERSION: Final = str(
    yaml.safe_load((ROOT / "charts" / "eval-operator" / "Chart.yaml").read_text())["appVersion"]
)


def binaries(*extra: str) -> Path:
    """The pinned binaries: built once by hack/kube-binaries.sh, then reused. `extra`: its
    optional parts (e.g. "kwok")."""
    result = subprocess.run(
        [str(ROOT / "hack" / "kube-binaries.sh"), *extra],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


class LocalCluster:
    def __init__(
        self,
        state_dir: Path,
        bin_dir: Path | None = None,
        operator_args: tuple[str, ...] = (),
        controller_args: tuple[str, ...] = (),
        network: realnode.Network = realnode.FIRST,
    ) -> None:
        """kubelet and containerd run the pods, from our real images (built and cached by
        localkube.images); `network` names the node and its addresses (a second cluster
        on this machine takes realnode.SECOND)."""
        self.state_dir = state_dir
        self.operator_args = operator_args
        self.network = network
        self.bin_dir = bin_dir or binaries()
        self.control_plane = ControlPlane(
            self.bin_dir,
            state_dir / "controlplane",
            real_node=True,
            controller_args=controller_args,
            # Pods reach the API server at the node's address.
            address=network.node_ip,
        )
        # Whether the node's address was on `lo` before start (None: not looked yet).
        self._address_was_there: bool | None = None
        self.kubelet: RealNode | None = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.operator_log = state_dir / "operator.log"
        self.metrics_port = 0

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, operator: bool = True) -> LocalCluster:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._address_was_there = realnode.has_node_address(self.network.node_ip)
            realnode.add_node_address(self.network.node_ip)
            self.control_plane.start()
            built = images_mod.default().all()
            self.kubelet = RealNode(self.bin_dir, self.kubeconfig, self.state_dir, self.network)
            self.kubelet.start(built)
            # Also under the chart's appVersion, the tag examples and the chart use.
            for image in (images_mod.RUNNER_IMAGE, images_mod.OPERATOR_IMAGE):
                self.kubelet.tag(image, image.rsplit(":", 1)[0] + ":" + APP_VERSION)
            self.install_crd()
            if operator:
                self.start_operator()
        except BaseException:
            self.stop()
            raise
        return self

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            text=True,
            capture_output=True,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The pinned helm against this cluster; its cache and config stay in state_dir."""
        home = self.state_dir / "helm"
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        result = subprocess.run(
            [str(self.bin_dir / "helm"), "--kubeconfig", str(self.kubeconfig), *args],
            text=True,
            capture_output=True,
            env=env,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def install_crd(self, timeout: float = 60.0) -> None:
        """Apply the CRDs in crds/ and wait until every one is Established."""
        names = []
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            self.kubectl("apply", "--server-side", "-f", str(path))
            names.append(yaml.safe_load(path.read_text())["metadata"]["name"])
        # Poll rather than `kubectl wait`, which gives up at once if discovery lags.
        deadline = time.monotonic() + timeout
        for name in names:
            conditions = ""
            while True:
                result = self.kubectl(
                    "get",
                    "crd",
                    name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                    check=False,
                )
                conditions = result.stdout.strip() or result.stderr.strip()
                if conditions == "True":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"CRD {name} was not Established in {timeout}s: {conditions}"
                    )
                time.sleep(0.2)

    def operator_argv(self, metrics_port: int, *extra: str) -> list[str]:
        """The operator's command line, as it would run in a pod. One process: it
        reconciles without leader election unless `extra` turns that on (a restarted
        operator would otherwise wait for its predecessor's Lease to expire)."""
        election = (
            [] if any(a.startswith("--leader-elect") for a in extra) else ["--leader-elect=false"]
        )
        return [
            sys.executable,
            "-m",
            "eval_operator",
            "--runner-image",
            images_mod.RUNNER_IMAGE,
            "--metrics-port",
            str(metrics_port),
            "--metrics-host",
            "127.0.0.1",
            *election,
            *self.operator_args,
            *extra,
        ]

    def start_operator(self, *extra: str) -> None:
        """Run the operator as a process, as it would run in a pod."""
        self.metrics_port = self.metrics_port or free_port()
        log = self.operator_log.open("ab")
        self.operator = subprocess.Popen(
            self.operator_argv(self.metrics_port, *extra),
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_operator_ready()

    def _wait_operator_ready(self, timeout: float = 30.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.operator is not None and self.operator.poll() is not None:
                raise RuntimeError(f"the operator exited: {self.operator_log.read_text()[-2000:]}")
            try:
                url = f"http://127.0.0.1:{self.metrics_port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the operator did not become healthy in time")

    def stop_operator(self, kill: bool = False) -> None:
        """SIGTERM (a graceful stop) or SIGKILL (a crash) the operator."""
        if self.operator is None:
            return
        if self.operator.poll() is None:
            self.operator.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.operator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        self.operator = None

    def stop(self) -> None:
        """Everything, in order, whatever fails on the way; stop signals (a second
        Ctrl-C) wait until it is done, so an interrupted stop leaves nothing behind."""
        failed: list[BaseException] = []
        with signals_held():
            for step in (self.stop_operator, self._stop_node, self.control_plane.stop):
                try:
                    step()
                except Exception as e:  # the later steps must still run
                    failed.append(e)
            if self._address_was_there is False:
                realnode.remove_node_address(self.network.node_ip)
            self._address_was_there = None
        if failed:
            raise failed[0]

    def _stop_node(self) -> None:
        node, self.kubelet = self.kubelet, None
        if node is not None:
            node.stop()


def load_documents(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
