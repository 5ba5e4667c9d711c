"""Container images for the real node, built without a registry and cached by content.

- base: a Debian bookworm minbase root file system with python3, pip and bash, made by
  mmdebstrap from the Debian mirror apt uses. Our Dockerfiles build FROM it in tests, and
  EvalTask scripts run on it (`eval-operator/base`).
- pause: the pod sandbox image, from kubernetes' own build/pause/linux/pause.c (in the Go
  module cache the binaries were built from), linked statically.
- runner, operator: built from runner-image/Dockerfile and operator/Dockerfile by buildah
  (`--isolation chroot`, `--pull=never`), FROM the local base.

Each image is a docker-archive tar that `ctr images import` loads. The cache key of an
image is a hash of everything it is made from, so a changed Dockerfile or source file
rebuilds exactly the images that contain it. `python -m localkube.images` builds them all
and prints where they are.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
CACHE_ROOT: Final = Path(
    os.environ.get("EVAL_OPERATOR_CACHE", Path.home() / ".cache" / "eval-operator")
)
SUITE: Final = "bookworm"
BASE_PACKAGES: Final = (
    "python3",
    "python3-pip",
    "python-is-python3",
    "bash",
    "ca-certificates",
    "passwd",
)
BASE_IMAGE: Final = "eval-operator/base:bookworm"
PAUSE_IMAGE: Final = "registry.k8s.io/pause:3.10"
RUNNER_IMAGE: Final = "eval-operator/runner:dev"
OPERATOR_IMAGE: Final = "eval-operator/operator:dev"
K8S_VERSION: Final = "v1.34.4"
# Evaluation images of real frameworks, as users build them (examples/images/<name>).
LM_EVAL_IMAGE: Final = "eval-operator/lm-eval:0.4.13"
BFCL_IMAGE: Final = "eval-operator/bfcl:2026.3.23"
EXAMPLE_IMAGES: Final = {
    LM_EVAL_IMAGE: "examples/images/lm-eval",
    BFCL_IMAGE: "examples/images/bfcl",
}
# What each of our images is built from, besides its Dockerfile.
SOURCES: Final = (
    "pyproject.toml",
    "README.md",
    "operator/eval_operator",
    "runner-image/eval_runner",
)


class ImageError(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _tree_bytes(paths: tuple[str, ...]) -> bytes:
    out = io.BytesIO()
    for rel in paths:
        root = ROOT / rel
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts:
                continue
            out.write(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return out.getvalue()


def docker_archive(rootfs_tar: Path, name: str, out: Path, cmd: list[str]) -> None:
    """Wrap a root file system tar as a one-layer docker-archive named `name`."""
    layer_digest = hashlib.sha256()
    with rootfs_tar.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            layer_digest.update(chunk)
    diff_id = "sha256:" + layer_digest.hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = layer_digest.hexdigest() + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [name], "Layers": [layer_name]}]
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as archive:
        for arcname, data in (
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        archive.add(rootfs_tar, arcname=layer_name)
    tmp.rename(out)


def _run(argv: list[str], **kwargs: object) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise ImageError(f"{' '.join(argv[:3])} ... failed:\n{result.stderr[-3000:]}")


def _mirror() -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources)."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Images:
    folder: Path

    def path(self, kind: str, key: str) -> Path:
        return self.folder / f"{kind}-{key}.tar"

    def base(self) -> Path:
        key = _digest(SUITE.encode(), " ".join(BASE_PACKAGES).encode(), b"v1")
        out = self.path("base", key)
        if out.exists():
            return out
        started = time.monotonic()
        log(f"building the base image ({SUITE} minbase + {', '.join(BASE_PACKAGES)}) ...")
        with tempfile.TemporaryDirectory(dir=self.folder) as work:
            rootfs = Path(work) / "rootfs.tar"
            # The base is for pip: drop Debian's "externally managed" marker in it.
            _run(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    "--customize-hook=rm -f $1/usr/lib/python3*/EXTERNALLY-MANAGED",
                    "--customize-hook=rm -rf $1/var/cache/apt/archives/*.deb"
                    " $1/var/lib/apt/lists/*",
                    SUITE,
                    str(rootfs),
                    _mirror(),
                ]
            )
            docker_archive(rootfs, BASE_IMAGE, out, ["/bin/bash"])
        log(f"built the base image in {time.monotonic() - started:.0f}s")
        return out

    def pause(self) -> Path:
        source = _pause_source()
        key = _digest(source.read_bytes(), b"v1")
        out = self.path("pause", key)
        if out.exists():
            return out
        log("building the pause image from kubernetes' pause.c ...")
        with tempfile.TemporaryDirectory(dir=self.folder) as work:
            binary = Path(work) / "pause"
            _run(["gcc", "-Os", "-static", "-o", str(binary), str(source)])
            rootfs = Path(work) / "rootfs.tar"
            with tarfile.open(rootfs, "w") as tar:
                tar.add(binary, arcname="pause")
            docker_archive(rootfs, PAUSE_IMAGE, out, ["/pause"])
        return out

    def dockerfile(
        self,
        name: str,
        dockerfile: str,
        base: Path,
        context: str = ".",
        sources: tuple[str, ...] = SOURCES,
    ) -> Path:
        """An image of ours, built by buildah from the Dockerfile FROM the local base;
        `context` is the build's folder and `sources` what the image is made from (both
        relative to the repository)."""
        key = _digest(
            (ROOT / dockerfile).read_bytes(), _tree_bytes(sources), base.name.encode(), b"v1"
        )
        out = self.path(name.split("/")[-1].split(":")[0], key)
        if out.exists():
            return out
        started = time.monotonic()
        log(f"building {name} from {dockerfile} with buildah ...")
        storage = self.folder / "buildah"
        common = [
            "--root",
            str(storage / "root"),
            "--runroot",
            str(storage / "run"),
            "--storage-driver",
            "vfs",
        ]
        _run(["buildah", *common, "pull", f"docker-archive:{base}"])
        _run(["buildah", *common, "tag", _local_name(base), BASE_IMAGE], check=False)
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        volumes = ["--volume", f"{ca}:{ca}:ro"] if ca.exists() else []
        env_args: list[str] = []
        for key_name in ("PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_DEFAULT_TIMEOUT"):
            if os.environ.get(key_name):
                env_args += ["--build-arg", f"{key_name}={os.environ[key_name]}"]
        _run(
            [
                "buildah",
                *common,
                "bud",
                "--pull=never",
                "--isolation",
                "chroot",
                "--network",
                "host",
                *volumes,
                "--build-arg",
                f"BASE={BASE_IMAGE}",
                *env_args,
                "-f",
                str(ROOT / dockerfile),
                "-t",
                name,
                str(ROOT / context),
            ]
        )
        tmp = out.with_suffix(".partial")
        tmp.unlink(missing_ok=True)
        _run(["buildah", *common, "push", name, f"docker-archive:{tmp}:{name}"])
        tmp.rename(out)
        # The archives of earlier sources of this image are of no further use (and large).
        for stale in self.folder.glob(f"{out.name.rsplit('-', 1)[0]}-*.tar"):
            if stale != out:
                stale.unlink()
        log(f"built {name} in {time.monotonic() - started:.0f}s")
        return out

    def all(self) -> dict[str, Path]:
        """Image name -> its docker-archive, building what the cache lacks."""
        self.folder.mkdir(parents=True, exist_ok=True)
        base = self.base()
        return {
            PAUSE_IMAGE: self.pause(),
            BASE_IMAGE: base,
            RUNNER_IMAGE: self.dockerfile(RUNNER_IMAGE, "runner-image/Dockerfile", base),
            OPERATOR_IMAGE: self.dockerfile(OPERATOR_IMAGE, "operator/Dockerfile", base),
        }

    def examples(self) -> dict[str, Path]:
        """The example evaluation images (examples/images/*), for the real-model tier."""
        self.folder.mkdir(parents=True, exist_ok=True)
        base = self.base()
        out = {}
        for name, folder in EXAMPLE_IMAGES.items():
            out[name] = self.dockerfile(
                name, f"{folder}/Dockerfile", base, context=folder, sources=(folder,)
            )
        return out


def _local_name(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
    return str(manifest[0]["RepoTags"][0])


def _pause_source() -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    result = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{K8S_VERSION}"],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"},
    )
    if result.returncode != 0:
        raise ImageError(f"go mod download k8s.io/kubernetes failed: {result.stderr[-2000:]}")
    folder = Path(json.loads(result.stdout)["Dir"])
    source = folder / "build" / "pause" / "linux" / "pause.c"
    if not source.exists():
        raise ImageError(f"{source} not found")
    return source


def default() -> Images:
    return Images(CACHE_ROOT / "images")


if __name__ == "__main__":
    wanted = default().examples() if sys.argv[1:] == ["--examples"] else default().all()
    for image, path in wanted.items():
        print(f"{image} {path}")
