"""The operator's account never reads another namespace's Secret for a user's spec, as the
real API server's audit log shows.

A name such as `../../kube-system/secrets/victim` is refused by the CRD (every object name
is a DNS-1123 subdomain). Such a spec may still be stored: written before the CRD said
so, say. Here the CRD is applied without its patterns and rules, so the API server
stores the spec, and the operator (as its own process, against a control plane of this
test's own with an audit log) must refuse it itself, with no request outside the
EvalTask's namespace and with the same words whether the Secret exists or not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localkube.cluster import ROOT, binaries
from localkube.controlplane import ControlPlane, free_port
from tests.e2e.support import wait_for

pytestmark = pytest.mark.e2e
POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
"""
# The operator's clients: kopf's (aiohttp) and the kubernetes client's.
OPERATOR_AGENTS = ("kopf", "OpenAPI-Generator")
TRAVERSALS = {
    "exists": "../../kube-system/secrets/victim",  # the Secret exists
    "absent": "../../kube-system/secrets/nobody",  # it does not
}


def without_validation(node: Any) -> Any:
    """The CRD's schema with its patterns and CEL rules taken out."""
    if isinstance(node, dict):
        return {
            k: without_validation(v)
            for k, v in node.items()
            if k not in ("pattern", "x-kubernetes-validations")
        }
    if isinstance(node, list):
        return [without_validation(v) for v in node]
    return node


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, Path]]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    audit = tmp_path / "audit.log"
    with ControlPlane(
        binaries(),
        tmp_path / "cp",
        apiserver_args=(
            f"--audit-policy-file={tmp_path / 'policy.yaml'}",
            f"--audit-log-path={audit}",
        ),
    ) as cp:
        yield cp, audit


def test_a_traversing_name_reads_nothing_outside_the_namespace_and_reveals_nothing(
    plane: tuple[ControlPlane, Path], tmp_path: Path
) -> None:
    cp, audit = plane
    kubectl = [str(binaries() / "kubectl"), "--kubeconfig", str(cp.kubeconfig)]

    def run(*args: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [*kubectl, *args], input=stdin, capture_output=True, text=True, check=True
        ).stdout

    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = without_validation(yaml.safe_load(path.read_text()))
        run("apply", "--server-side", "-f", "-", stdin=json.dumps(crd))
    run("wait", "--for=condition=Established", "crd/evaltasks.evaloperator.io", "--timeout=60s")
    run("create", "namespace", "team-a")
    run("create", "secret", "generic", "victim", "-n", "kube-system", "--from-literal=k=v")
    log = tmp_path / "operator.log"
    port = free_port()
    with log.open("wb") as out:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eval_operator",
                "--leader-elect=false",
                "--metrics-host=127.0.0.1",
                f"--metrics-port={port}",
            ],
            env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for name, ref in TRAVERSALS.items():
            body = {
                "apiVersion": "evaloperator.io/v1alpha1",
                "kind": "EvalTask",
                "metadata": {"name": name, "namespace": "team-a"},
                "spec": {
                    "models": [
                        {
                            "name": "m1",
                            "url": "http://127.0.0.1:1/v1/chat/completions",
                            "auth": {"secretRef": {"name": ref, "key": "k"}},
                        }
                    ],
                    "tasks": [{"name": "t1", "image": "eval-operator/base"}],
                },
            }
            run("create", "-f", "-", stdin=json.dumps(body))

        def verdicts() -> dict[str, str] | None:
            found = {}
            for name in TRAVERSALS:
                doc = json.loads(run("get", "evaltask", name, "-n", "team-a", "-o", "json"))
                conds = (doc.get("status") or {}).get("conditions") or []
                valid = [c for c in conds if c["type"] == "SpecValid"]
                if not valid:
                    return None
                found[name] = valid[0]
            return found

        said = wait_for(verdicts, 60, "the operator's verdicts")
    finally:
        operator.terminate()
        operator.wait(timeout=30)
    for cond in said.values():
        assert cond["status"] == "False", cond
        assert "spec.models[0].auth.secretRef.name" in cond["message"], cond
        assert "not found" not in cond["message"], cond
    # The same words for a Secret that exists and one that does not: nothing to learn.
    words = {c["message"].replace(TRAVERSALS[n], "NAME") for n, c in said.items()}
    assert len(words) == 1, words
    time.sleep(1)  # the audit log's last lines
    events = [json.loads(line) for line in audit.read_text().splitlines() if line]
    ours = [e for e in events if e.get("userAgent", "").startswith(OPERATOR_AGENTS)]
    assert ours, "the operator's requests are in the audit log"
    outside = [
        (e["verb"], e["requestURI"])
        for e in ours
        if (e.get("objectRef") or {}).get("namespace") not in (None, "team-a")
        or "kube-system" in e["requestURI"]
        or "victim" in e["requestURI"]
    ]
    assert outside == []
    secrets = [
        e["requestURI"] for e in ours if (e.get("objectRef") or {}).get("resource") == "secrets"
    ]
    print(f"operator_requests={len(ours)} secret_requests={len(secrets)}")
