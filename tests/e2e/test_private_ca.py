"""End to end: a model service behind a private CA (tls.caConfigMap).

The test makes a CA and a certificate it signs for the node-facing address, serves the
mock model over https with it, and runs the same tasks with and without the CA: the
runner's probe and reference evaluator, and a plain Python task (urllib, which reads
SSL_CERT_FILE), trust the service only with it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from eval_runner import config, samples
from localkube import realnode
from localkube.mockmodel import MockModel
from tests.e2e.support import model, namespace, task
from tests.e2e.test_runner_e2e import runner_task

pytestmark = pytest.mark.e2e
TOKEN = "Bearer e2e-tls-token"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def private_ca(folder: Path, ip: str) -> tuple[Path, Path, Path]:
    """A CA, and a key and certificate for `ip` that it signs: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt")
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=eval-e2e test CA", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    (folder / "san.ext").write_text(f"subjectAltName=IP:{ip}\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(folder / "san.ext"),
            "-out", str(cert))  # fmt: skip
    return ca, cert, key


@pytest.fixture
def api(cluster, api_client):
    with namespace(api_client, TOKEN) as the_api:
        yield the_api


def test_a_private_ca_is_trusted_only_when_the_model_gives_it(api, tmp_path):
    ca, cert, key = private_ca(tmp_path, realnode.NODE_IP)
    api.configmap("model-ca", {"ca.crt": ca.read_text()})
    rows = samples.load("builtin:arithmetic", config.Fields())
    answers = {s.query: s.answers[0] for s in rows if s.query}
    with MockModel.answering(
        "m1",
        answers,
        token=TOKEN,
        backlog=64,
        host=realnode.NODE_IP,
        tls=(str(cert), str(key)),
    ) as mock:
        assert mock.url.startswith("https://")
        right = sum(mock.answer(s.query or "") == s.answers[0] for s in rows)
        tasks = [
            runner_task("arithmetic", "arithmetic", "exact_match", "exact_match"),
            task("urllib", 0.5),
        ]
        untrusted = model("m1", mock.url)
        trusted = {**untrusted, "tls": {"caConfigMap": {"name": "model-ca", "key": "ca.crt"}}}
        api.create_evaltask("without-ca", {"models": [untrusted], "tasks": tasks})
        api.create_evaltask("with-ca", {"models": [trusted], "tasks": tasks})
        without = api.wait_phase("without-ca", ("Succeeded", "Failed"))
        with_ca = api.wait_phase("with-ca", ("Succeeded", "Failed"))
    assert without["phase"] == "Failed"
    for name in ("arithmetic", "urllib"):
        run = api.run("without-ca", "m1", name)
        # The probe (the pod's first container) says it, before the task would hang on it.
        assert run["state"] == "Failed"
        assert "presented a certificate that is not trusted" in run["message"], run
        assert "CERTIFICATE_VERIFY_FAILED" in run["message"], run

    assert with_ca["phase"] == "Succeeded", with_ca
    scored = api.run("with-ca", "m1", "arithmetic")["metrics"]
    assert scored["exact_match"] == round(right / len(rows), 6) > 0.9
    assert scored["errors"] == 0
    # A plain urllib task trusts it too: SSL_CERT_FILE names the mounted CA.
    assert api.run("with-ca", "m1", "urllib")["metrics"]["score"] == 0.5
    assert mock.unauthorized == 0
