"""Helpers for the chart tests: the pinned helm, rendered documents, the chart's metadata."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from localkube.cluster import ROOT, binaries

CHART = ROOT / "charts" / "eval-operator"
RELEASE, NAMESPACE = "evals", "eval-system"


class Helm:
    """The pinned helm (hack/kube-binaries.sh), with its cache and config in `home`."""

    def __init__(self, home: Path) -> None:
        self.binary = binaries() / "helm"
        self.env = {
            **os.environ,
            **{
                f"HELM_{kind}_HOME": str(home / kind.lower())
                for kind in ("CACHE", "CONFIG", "DATA")
            },
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], text=True, capture_output=True, check=check, env=self.env
        )

    def template(self, *args: str) -> list[dict[str, Any]]:
        """`helm template` of the chart as release `evals` in `eval-system` -> its documents."""
        out = self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = find(docs, kind)
    return doc


def chart_meta() -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return meta
