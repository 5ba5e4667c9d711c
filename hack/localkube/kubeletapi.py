"""The kubelet's log endpoint, so that `kubectl logs` works against the local node.

`kubectl logs` asks the API server, which calls the kubelet of the pod's node at
https://<node InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>
/containerLogs/<namespace>/<pod>/<container>. Without --kubelet-certificate-authority
the API server does not verify the kubelet's certificate, and without
--kubelet-client-certificate it presents none, so a self-signed certificate on
loopback without client authentication is all it takes. Supported: follow,
tailLines, limitBytes.
"""

from __future__ import annotations

import logging
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("localkube.node")
LogFinder = Callable[[str, str, str], Path]  # (namespace, pod, container) -> log file
Running = Callable[[str, str, str], bool]  # is that container still running?
_PATH = re.compile(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)")


def self_signed(folder: Path, name: str) -> tuple[Path, Path] | None:
    """A throwaway certificate for 127.0.0.1 (openssl CLI); None without openssl."""
    cert, key = folder / "kubelet.crt", folder / "kubelet.key"
    if not (cert.exists() and key.exists()):
        if not shutil.which("openssl"):
            return None
        folder.mkdir(parents=True, exist_ok=True)
        command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
        command += ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650"]
        command += ["-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1"]
        subprocess.run(
            [*command, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
        )
    return cert, key


class LogServer:
    """HTTPS on a free loopback port, answering GET /containerLogs/... from log files."""

    def __init__(self, find_log: LogFinder, running: Running, cert: Path, key: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        handler = type(
            "Handler",
            (_Handler,),
            {"find_log": staticmethod(find_log), "running": staticmethod(running)},
        )
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="kubelet-api", daemon=True
        )

    def start(self) -> LogServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    find_log: LogFinder
    running: Running

    def log_message(self, format: str, *args: object) -> None:
        log.debug("kubelet api: " + format, *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        match = _PATH.fullmatch(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            path = self.find_log(*match.groups()) if match else None
        except FileNotFoundError:
            path = None
        if path is None:
            self.send_error(404, "no such container log")
            return
        data = path.read_bytes()
        if "tailLines" in query:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) else b""
        limit = int(query.get("limitBytes", 0)) or None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        sent = self._send(data, limit, 0)
        if query.get("follow") == "true":
            self._follow(path, match.groups() if match else ("", "", ""), limit, sent)

    def _send(self, data: bytes, limit: int | None, sent: int) -> int:
        if limit is not None:
            data = data[: max(0, limit - sent)]
        self.wfile.write(data)
        self.wfile.flush()
        return sent + len(data)

    def _follow(self, path: Path, key: tuple[str, ...], limit: int | None, sent: int) -> None:
        """Stream what the container writes next, until it ends or the client leaves."""
        offset = path.stat().st_size
        try:
            while limit is None or sent < limit:
                alive = self.running(*key)
                with path.open("rb") as source:
                    source.seek(offset)
                    chunk = source.read()
                offset += len(chunk)
                sent = self._send(chunk, limit, sent) if chunk else sent
                if not chunk and not alive:
                    return
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return
