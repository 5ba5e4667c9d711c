"""Run etcd, kube-apiserver and kube-controller-manager on loopback for tests.

End-to-end tests need real API semantics (validation, admission, RBAC) and
real controllers (Job, garbage collector, namespace, service accounts), which
fakes and envtest's bare API server do not give. By default there is no scheduler
and no kubelet: tests bind pods to nodes and write pod status themselves.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, TracebackType

CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "ttl-after-finished-controller",
    "deployment-controller",
    "replicaset-controller",
    # Real clusters count quota usage; without it a ResourceQuota admits nothing.
    "resourcequota-controller",
)
# With a real node: nodes' health and taints, the pod garbage collector, and the
# kube-root-ca.crt ConfigMap that service-account token volumes mount.
NODE_CONTROLLERS = (
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "persistentvolume-binder-controller",
)
# On top of the API server's default plugins (ResourceQuota, LimitRanger, ServiceAccount,
# ... are on by default): real clusters also enforce who may block an owner's deletion.
ADMISSION_PLUGINS = ("OwnerReferencesPermissionEnforcement",)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None) if sys.platform == "linux" else None
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}


class ControlPlaneError(RuntimeError):
    """A component exited or did not become ready in time."""


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """Return a loopback port that is free now (not reserved; a race is unlikely)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _write_rsa_key(path: Path) -> None:
    """Write a PEM RSA key for signing service account tokens.

    The openssl CLI or the `cryptography` package, whichever is present, so
    that no new dependency is needed.
    """
    if shutil.which("openssl"):
        command = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]
        subprocess.run([*command, "-out", str(path)], check=True, capture_output=True)
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the parent dies, even by SIGKILL.

    The components run in their own process group (so a terminal's Ctrl-C does
    not hit them before we stop them in order), which also means killing the
    test runner's group would not reach them; this closes that gap on Linux.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold stop signals back (on the main thread) while a teardown runs: a second
    Ctrl-C or SIGTERM then lands after it, not in the middle of it. Nests: the mask
    in force before is put back, so only the outermost block delivers them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so `with` blocks, fixtures and atexit run.

    Python's default for them is to die without any cleanup; handlers someone
    else installed are left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _exit_on_signal)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, as a context manager.

    `kubeconfig` is an admin (system:masters) kubeconfig that kubectl and the
    Python `kubernetes` client accept. Stopping kills every process and removes
    `data_dir` (logs included), so keep what you need from the logs before.
    The processes are bound to the thread that starts them (see `_die_with_parent`).
    """

    def __init__(
        self,
        bin_dir: Path | str,
        data_dir: Path | str | None = None,
        *,
        ready_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        real_node: bool = False,
        scheduler: bool = False,
        controller_args: tuple[str, ...] = (),
        apiserver_args: tuple[str, ...] = (),
        scheduler_args: tuple[str, ...] = (),
        address: str = "127.0.0.1",
    ) -> None:
        """`real_node`: also run kube-scheduler and the controllers a kubelet needs.
        `scheduler`: run kube-scheduler without those controllers (for a simulated node).
        `controller_args`, `apiserver_args`, `scheduler_args`: more flags of
        kube-controller-manager, kube-apiserver and kube-scheduler. `address`: where the API
        server listens (pods of a real node reach it there; the address must exist before
        start)."""
        self.address = address
        self.apiserver_args = apiserver_args
        self.bin_dir = Path(bin_dir)
        self.real_node = real_node
        self.scheduler = scheduler or real_node
        self.controller_args = controller_args
        self.scheduler_args = scheduler_args
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="localkube-"))
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.token = secrets.token_hex(16)
        self.server = ""
        self.kubeconfig = self.data_dir / "kubeconfig"
        self.ready_after: dict[str, float] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        # Each component's flags and readiness URL, to start it again after an outage.
        self._args: dict[str, tuple[str, ...]] = {}
        self._ready: dict[str, tuple[str, str | None]] = {}
        # Readiness probing only: clients verify the server through the kubeconfig's CA.
        probe_tls = ssl.create_default_context()
        probe_tls.check_hostname = False
        probe_tls.verify_mode = ssl.CERT_NONE
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=probe_tls)
        )

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def pid(self, name: str) -> int:
        """The process id of component `name` (e.g. "kube-apiserver")."""
        return self._procs[name].pid

    def log_path(self, name: str) -> Path:
        """Where the output of component `name` (e.g. "kube-apiserver") goes."""
        return self.data_dir / f"{name}.log"

    def start(self) -> ControlPlane:
        """Start all components and wait until each is ready; on failure, clean up."""
        _install_signal_handlers()
        atexit.register(self.stop)
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        self._write_kubeconfig()
        self._start_controller_manager()

    def _start_etcd(self) -> str:
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        self._spawn(
            "etcd",
            f"--data-dir={self.data_dir / 'etcd'}",
            "--name=localkube",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=localkube={peer}",
            "--unsafe-no-fsync",  # throwaway data: durability only costs time
        )
        self._wait_ready("etcd", f"{client}/health")
        return client

    def _start_apiserver(self, etcd_url: str) -> None:
        tokens = self.data_dir / "tokens.csv"
        tokens.write_text(f"{self.token},admin,admin,system:masters\n")
        sa_key = self.data_dir / "service-account.key"
        _write_rsa_key(sa_key)
        port = free_port()
        self.server = f"https://{self.address}:{port}"
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={etcd_url}",
            f"--secure-port={port}",
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            # Endpoints may not hold loopback addresses, so the `kubernetes`
            # Service endpoints cannot be maintained; don't try (log noise).
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.data_dir / 'apiserver-certs'}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
            # kubelet's Hostname address does not resolve here; its InternalIP does.
            "--kubelet-preferred-address-types=InternalIP",
            *self.apiserver_args,
        )
        self._wait_ready("kube-apiserver", f"{self.server}/readyz", token=self.token)

    @property
    def ca_file(self) -> Path:
        """The API server's self-generated serving certificate followed by its CA."""
        return self.data_dir / "apiserver-certs" / "apiserver.crt"

    def _write_kubeconfig(self) -> None:
        # JSON is valid YAML: kubectl and the Python client read it, no YAML writer needed.
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": ca_data,
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))

    def _start_controller_manager(self) -> None:
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={','.join(CONTROLLERS + (NODE_CONTROLLERS if self.real_node else ()))}",
            f"--service-account-private-key-file={self.data_dir / 'service-account.key'}",
            f"--root-ca-file={self.ca_file}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",  # the default 10257 would clash between instances
            f"--cert-dir={self.data_dir / 'controller-manager-certs'}",
            *self.controller_args,
        )
        self._wait_ready("kube-controller-manager", f"https://127.0.0.1:{port}/healthz")
        if self.scheduler:
            self._start_scheduler()

    def _start_scheduler(self) -> None:
        port = free_port()
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.data_dir / 'scheduler-certs'}",
            *self.scheduler_args,
        )
        self._wait_ready("kube-scheduler", f"https://127.0.0.1:{port}/healthz")

    def stop_component(self, name: str) -> None:
        """Stop one component (SIGTERM, then SIGKILL), as an outage would; its data stays,
        so `start_component` brings it back as it was."""
        proc = self._procs.pop(name)
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.wait()

    def start_component(self, name: str) -> None:
        """Start a stopped component again, with the same flags, ports and data."""
        self._spawn(name, *self._args[name])
        self._wait_ready(name, *self._ready[name])

    def _spawn(self, name: str, *args: str) -> None:
        self._args[name] = args
        with self.log_path(name).open("ab") as log:
            self._procs[name] = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _wait_ready(self, name: str, url: str, token: str | None = None) -> None:
        self._ready[name] = (url, token)
        started = time.monotonic()
        deadline = started + self.ready_timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, headers=headers)
        last_error = ""
        while True:
            code = self._procs[name].poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {code}; log tail:\n{_tail(self.log_path(name))}"
                )
            try:
                with self._opener.open(request, timeout=5) as response:
                    if response.status == 200:
                        self.ready_after[name] = time.monotonic() - started
                        return
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready at {url} after {self.ready_timeout:.0f}s ({last_error}); "
                    f"log tail:\n{_tail(self.log_path(name))}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Terminate every process group (SIGTERM, then SIGKILL) and remove `data_dir`.

        Idempotent. Stop signals are held back meanwhile, so a second Ctrl-C
        cannot leave processes behind; they are delivered once cleanup is done.
        """
        atexit.unregister(self.stop)
        with signals_held():
            procs = list(reversed(self._procs.values()))
            self._procs.clear()
            for proc in procs:
                self._signal(proc, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait()
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
