"""What the local node needs before starting a container: argv, env, volumes, mounts.

This follows the kubelet where tests can observe the difference: `$(VAR)`
expansion, env precedence, CreateContainerConfigError messages for missing
Secrets/ConfigMaps/keys, read-only configMap/secret/projected volumes, and
subPath folders created on demand. Problems raise `SetupError`, which the node
shows as the container's `waiting` reason and retries, as the kubelet does.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from localkube.kubejson import Kube, KubeError, object_files

log = logging.getLogger("localkube.node")
CONFIG_ERROR = "CreateContainerConfigError"
MOUNT_ERROR = "ContainerCreating"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
PYTHON_COMMANDS = ("python", "python3")
# Volume kinds the kubelet always mounts read-only.
READ_ONLY_KINDS = ("configMap", "secret", "projected", "downwardAPI")
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(1000) ** (i + 1) for i, s in enumerate(("k", "M", "G", "T", "P", "E"))},
    **{"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)},
}


class SetupError(Exception):
    """The container cannot start yet; `reason` goes into its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` is a literal `$`; unknown `$(X)` stays as is."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            end = text.find(")", i + 2) if nxt == "(" else -1
            if end != -1:
                name = text[i + 2 : end]
                out.append(env.get(name, f"$({name})"))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def image_key(image: str) -> str:
    """The image name without its tag or digest: `reg:5000/a/b:v1@sha256:x` -> `reg:5000/a/b`."""
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return name


def container_argv(
    container: Mapping[str, Any], env: Mapping[str, str], images: Mapping[str, list[str]]
) -> list[str]:
    """command + args after expansion; without a command, the image's local entry point.

    `python`/`python3` become this interpreter, so pods share the caller's virtualenv.
    """
    command = [expand(part, env) for part in container.get("command") or []]
    args = [expand(part, env) for part in container.get("args") or []]
    if command:
        if command[0] in PYTHON_COMMANDS:
            command[0] = sys.executable
        return [*command, *args]
    image = container.get("image", "")
    entry = images.get(image_key(image), images.get(image))
    if entry is None:
        raise SetupError("ErrImagePull", f"image {image} has no local entry point")
    return [*entry, *args]


def quantity(text: str) -> Decimal:
    """A resource quantity ("500m", "2Gi", "1e3") as a number."""
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", str(text).strip())
    if not match or match[2] not in _SUFFIXES:
        raise SetupError(CONFIG_ERROR, f"invalid quantity {text!r}")
    return Decimal(match[1]) * _SUFFIXES[match[2]]


class PodResolver:
    """Resolves one pod's references (fields, resources, Secrets, ConfigMaps) via the API."""

    def __init__(
        self,
        kube: Kube,
        pod: Mapping[str, Any],
        work_dir: Path,
        host_ip: str,
        capacity: Mapping[str, str],
    ) -> None:
        self.kube = kube
        self.pod = pod
        self.work_dir = work_dir
        self.host_ip = host_ip
        self.capacity = capacity
        self.namespace: str = pod["metadata"]["namespace"]

    # --- references -----------------------------------------------------------------

    def _object(self, kind: str, name: str, optional: bool | None) -> dict[str, bytes] | None:
        """The values of a Secret/ConfigMap; None when missing and optional."""
        plural = "secrets" if kind == "Secret" else "configmaps"
        try:
            obj = self.kube.call("GET", f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        except KubeError as error:
            if error.status == 404 and optional:
                return None
            if error.status == 404:
                raise SetupError(CONFIG_ERROR, f'{kind.lower()} "{name}" not found') from None
            raise SetupError(CONFIG_ERROR, f"reading {kind} {name}: {error}") from None
        return object_files(obj)

    def _key(self, kind: str, ref: Mapping[str, Any]) -> bytes | None:
        values = self._object(kind, ref.get("name", ""), ref.get("optional"))
        if values is None:
            return None
        if ref["key"] not in values:
            if ref.get("optional"):
                return None
            raise SetupError(
                CONFIG_ERROR,
                f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref.get('name')}",
            )
        return values[ref["key"]]

    def field(self, path: str) -> str:
        """A downward API fieldRef value."""
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": self.namespace,
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            **dict.fromkeys(("status.hostIP", "status.hostIPs"), self.host_ip),
            **dict.fromkeys(("status.podIP", "status.podIPs"), self.host_ip),
        }
        if path in simple:
            return simple[path]
        if path in ("metadata.labels", "metadata.annotations"):
            items = sorted((meta.get(path.split(".")[1]) or {}).items())
            return "\n".join(f'{k}="{v}"' for k, v in items)
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return str((meta.get(match[1]) or {}).get(match[2], ""))
        raise SetupError(CONFIG_ERROR, f"unsupported fieldPath {path!r}")

    def resource(self, ref: Mapping[str, Any], default_container: str) -> str:
        """A resourceFieldRef value; limits default to the node's capacity, like the kubelet."""
        name = ref.get("containerName") or default_container
        spec = self.pod["spec"]
        containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
        container = next((c for c in containers if c["name"] == name), {})
        kind, _, resource = ref["resource"].partition(".")
        resources = container.get("resources") or {}
        value = (resources.get(kind) or {}).get(resource)
        if value is None and kind == "requests":
            value = (resources.get("limits") or {}).get(resource, "0")
        if value is None:
            value = self.capacity.get(resource, "0")
        divisor = quantity(ref.get("divisor") or "1") or Decimal(1)
        return str(math.ceil(quantity(value) / divisor))

    # --- env ------------------------------------------------------------------------

    def env(self, container: Mapping[str, Any], service_env: Mapping[str, str]) -> dict[str, str]:
        """The container's environment: envFrom, then env (expanded in order), then
        the service variables that are not set yet, as the kubelet orders them."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            kind = "Secret" if "secretRef" in source else "ConfigMap"
            ref = source.get("secretRef") or source.get("configMapRef") or {}
            values = self._object(kind, ref.get("name", ""), ref.get("optional")) or {}
            for key, raw in values.items():
                env[source.get("prefix", "") + key] = raw.decode("utf-8", errors="replace")
        for var in container.get("env") or []:
            source = var.get("valueFrom")
            if source is None:
                env[var["name"]] = expand(var.get("value", ""), {**service_env, **env})
                continue
            value: str | bytes | None
            if "secretKeyRef" in source:
                value = self._key("Secret", source["secretKeyRef"])
            elif "configMapKeyRef" in source:
                value = self._key("ConfigMap", source["configMapKeyRef"])
            elif "fieldRef" in source:
                value = self.field(source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                value = self.resource(source["resourceFieldRef"], container["name"])
            else:
                raise SetupError(CONFIG_ERROR, f"unsupported valueFrom for {var['name']}")
            if value is not None:
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                env[var["name"]] = text
        return {**service_env, **env}

    # --- volumes --------------------------------------------------------------------

    def volumes(self, root: Path) -> dict[str, Path]:
        """Materialize every volume of the pod under `root`: name -> host path."""
        paths: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            paths[volume["name"]] = self._volume(volume, root / volume["name"])
        return paths

    def _volume(self, volume: Mapping[str, Any], folder: Path) -> Path:
        name = volume["name"]
        try:
            if "hostPath" in volume:
                return self._host_path(volume["hostPath"])
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                path = self.work_dir / "pvc" / self.namespace / claim
                path.mkdir(parents=True, exist_ok=True)
                return path
            if folder.exists() and any(k in volume for k in READ_ONLY_KINDS):
                shutil.rmtree(folder)  # a retry: write the current contents afresh
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume or "secret" in volume:
                self._object_files(
                    volume.get("configMap") or volume["secret"],
                    folder,
                    "ConfigMap" if "configMap" in volume else "Secret",
                )
            elif "projected" in volume:
                self._projected(volume["projected"], folder)
            elif "downwardAPI" in volume:
                self._downward(volume["downwardAPI"], folder)
            elif not any(k in volume for k in ("emptyDir", "ephemeral")):
                log.warning("volume %s: unsupported kind, an empty folder stands in", name)
            return folder
        except SetupError as error:
            raise SetupError(
                MOUNT_ERROR, f'MountVolume.SetUp failed for volume "{name}" : {error.message}'
            ) from None

    @staticmethod
    def _host_path(source: Mapping[str, Any]) -> Path:
        path, kind = Path(source["path"]), source.get("type", "")
        if not path.exists():
            if kind in ("", "DirectoryOrCreate"):
                path.mkdir(parents=True)
            elif kind == "FileOrCreate":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                raise SetupError(MOUNT_ERROR, f"hostPath type check failed: {path} ({kind})")
        return path

    @staticmethod
    def _write(folder: Path, relative: str, data: bytes, mode: int | None) -> None:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode if mode is not None else 0o644)

    def _object_files(
        self, source: Mapping[str, Any], folder: Path, kind: str, mode: int | None = None
    ) -> None:
        """Files of a configMap/secret volume (or projection), honoring items key->path."""
        name = source.get("secretName") or source.get("name", "")
        values = self._object(kind, name, source.get("optional"))
        if values is None:
            return
        mode = source.get("defaultMode", mode)
        items = source.get("items") or [{"key": k, "path": k} for k in values]
        for item in items:
            if item["key"] not in values:
                if source.get("optional"):
                    continue
                raise SetupError(
                    MOUNT_ERROR,
                    f"configmap references non-existent config key: {item['key']}"
                    if kind == "ConfigMap"
                    else f"references non-existent secret key: {item['key']}",
                )
            self._write(folder, item["path"], values[item["key"]], item.get("mode", mode))

    def _downward(self, source: Mapping[str, Any], folder: Path, mode: int | None = None) -> None:
        mode = source.get("defaultMode", mode)
        for item in source.get("items") or []:
            if "fieldRef" in item:
                value = self.field(item["fieldRef"]["fieldPath"])
            else:
                value = self.resource(item["resourceFieldRef"], "")
            self._write(folder, item["path"], value.encode(), item.get("mode", mode))

    def _projected(self, projected: Mapping[str, Any], folder: Path) -> None:
        mode = projected.get("defaultMode")
        for source in projected.get("sources") or []:
            if "configMap" in source:
                self._config_map_projection(source["configMap"], folder, mode)
            elif "secret" in source:
                self._object_files(source["secret"], folder, "Secret", mode)
            elif "downwardAPI" in source:
                self._downward(source["downwardAPI"], folder, mode)
            elif "serviceAccountToken" in source:
                token = self._token(source["serviceAccountToken"])
                self._write(folder, source["serviceAccountToken"]["path"], token.encode(), mode)

    def _config_map_projection(
        self, source: Mapping[str, Any], folder: Path, mode: int | None
    ) -> None:
        """The service account volume projects kube-root-ca.crt, which only exists when the
        root CA publisher controller runs; without it, serve the kubeconfig's CA instead."""
        try:
            self._object_files(source, folder, "ConfigMap", mode)
        except SetupError:
            if source.get("name") != "kube-root-ca.crt":
                raise
            for item in source.get("items") or [{"key": "ca.crt", "path": "ca.crt"}]:
                self._write(folder, item["path"], self.kube.ca_bundle().encode(), mode)

    def _token(self, source: Mapping[str, Any]) -> str:
        """A bound service account token from the TokenRequest API, as the kubelet gets."""
        meta, account = self.pod["metadata"], self.pod["spec"].get("serviceAccountName", "default")
        spec: dict[str, Any] = {
            "expirationSeconds": source.get("expirationSeconds", 3600),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        try:
            answer = self.kube.call(
                "POST",
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            )
        except KubeError as error:
            raise SetupError(MOUNT_ERROR, f"requesting a token for {account}: {error}") from None
        return str(answer["status"]["token"])

    # --- mounts ---------------------------------------------------------------------

    def mounts(
        self,
        container: Mapping[str, Any],
        volumes: Mapping[str, Path],
        env: Mapping[str, str],
        termination_file: Path,
    ) -> list[dict[str, Any]]:
        """Bind mounts for a container, parents before children."""
        kinds = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        mounts = []
        for mount in container.get("volumeMounts") or []:
            volume = kinds.get(mount["name"], {})
            source = volumes[mount["name"]]
            sub = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
            if sub:
                source = source / sub
                if not source.exists():
                    source.mkdir(parents=True)
            read_only = bool(mount.get("readOnly")) or any(k in volume for k in READ_ONLY_KINDS)
            claim = volume.get("persistentVolumeClaim") or {}
            mounts.append(
                {
                    "source": str(source),
                    "target": mount["mountPath"],
                    "readOnly": read_only or bool(claim.get("readOnly")),
                }
            )
        target = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        mounts.append({"source": str(termination_file), "target": target, "readOnly": False})
        return sorted(mounts, key=lambda m: len(Path(m["target"]).parts))


def base_environment() -> dict[str, str]:
    """The node's own environment minus KUBECONFIG, so programs find this machine's
    tools and virtualenv but, as in a pod, talk to the API in-cluster style."""
    return {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
