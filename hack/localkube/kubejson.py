"""A minimal JSON client over the official `kubernetes` package, for the local node.

The node reads and writes pods, nodes, secrets and config maps as plain JSON
dicts (camelCase, exactly as the API serves them): that mirrors the kubelet's
view of objects, avoids the model classes' lossy (de)serialization, and lets a
watch stream be read line by line and cut off from another thread.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import config
from kubernetes.client import ApiClient, Configuration

STRATEGIC_MERGE = "application/strategic-merge-patch+json"


class KubeError(Exception):
    """The API server answered with a non-2xx status (0: it could not be reached)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Kube:
    """JSON requests to the API server named by a kubeconfig; thread-safe."""

    def __init__(self, kubeconfig: Path) -> None:
        configuration = Configuration()
        # Pod workers patch status concurrently; the default pool (5 per CPU) can run short.
        configuration.connection_pool_maxsize = 32
        config.load_kube_config(str(kubeconfig), client_configuration=configuration)
        self.client = ApiClient(configuration)
        self.server: str = self.client.configuration.host

    def close(self) -> None:
        self.client.close()

    def ca_bundle(self) -> str:
        """The CA the kubeconfig trusts (what kube-root-ca.crt would publish)."""
        path = self.client.configuration.ssl_ca_cert
        return Path(path).read_text() if path else ""

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, Any] | None,
        content_type: str,
        timeout: float | tuple[float, float | None],
    ) -> Any:
        method, url, headers, payload, post = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            return self.client.call_api(
                method, url, headers, payload, post, _request_timeout=timeout
            )
        except (OSError, urllib3.exceptions.HTTPError) as error:  # unreachable
            raise KubeError(0, str(error)) from error

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or KubeError."""
        response = self._send(method, path, body, query, content_type, timeout)
        text = response.read().decode("utf-8", errors="replace")
        if not 200 <= response.status < 300:
            raise KubeError(response.status, text)
        result: dict[str, Any] = json.loads(text) if text else {}
        return result

    def watch(
        self, path: str, query: Mapping[str, Any], handle: list[Any], stop: threading.Event
    ) -> Iterator[dict[str, Any]]:
        """Yield the events of a watch until the server ends it or `stop` is set.

        `handle` holds the open response meanwhile, so that whoever sets `stop`
        can cut the stream at once with `interrupt` (set first, then interrupt).
        """
        response = self._send(
            "GET", path, None, {**query, "watch": "true"}, "application/json", (10.0, None)
        )
        if response.status != 200:
            raise KubeError(response.status, response.read().decode(errors="replace"))
        raw = response.response
        handle[:] = [raw]
        buffer = b""
        try:
            if stop.is_set():
                return
            for chunk in raw.stream(amt=None, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            handle.clear()
            raw.close()  # never back to the pool: the stream may have been cut
            raw.release_conn()

    @staticmethod
    def interrupt(handle: list[Any]) -> None:
        """Cut a running watch (see `watch`) so its reader returns promptly."""
        for raw in list(handle):
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                raw.shutdown()


def object_files(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's or ConfigMap's values as bytes: base64 `data` (Secret) or
    `binaryData` (ConfigMap), plain `data` (ConfigMap) and `stringData` (Secret)."""
    encoded = obj.get("binaryData") or (obj.get("data") if obj.get("kind") == "Secret" else None)
    values = {k: base64.b64decode(v) for k, v in (encoded or {}).items()}
    if obj.get("kind") != "Secret":
        values.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
    values.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    return values
