"""Helpers for the runner's tests: datasets on disk, the environment, reading the outputs."""

from __future__ import annotations

import asyncio
import atexit
import io
import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from eval_runner import config, results, run, store


def _self_signed() -> Path:
    """A fresh self-signed certificate for 127.0.0.1, made per test session: no key is kept
    in the repository."""
    folder = Path(tempfile.mkdtemp(prefix="runner-tls-"))
    atexit.register(shutil.rmtree, folder, True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return folder


TLS_DIR = _self_signed()
# For localkube.mockmodel.MockModel(tls=TLS): it serves https with that certificate.
TLS = (str(TLS_DIR / "cert.pem"), str(TLS_DIR / "key.pem"))


def questions(count: int) -> dict[str, str]:
    """`q01` -> `a01`, ...: queries that are easy to tell apart in a server's log."""
    return {f"q{i:02d}": f"a{i:02d}" for i in range(1, count + 1)}


def write_dataset(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def qa_dataset(path: Path, count: int) -> Path:
    rows = [{"id": q, "query": q, "answer": a} for q, a in questions(count).items()]
    return write_dataset(path, rows)


# EVAL_HTTP_PROCESS in every environment() below; the `http_process` fixture sets it.
HTTP_PROCESS = "auto"


def environment(url: str | None, dataset: Path | str, output: Path, **extra: Any) -> dict[str, str]:
    """What the operator injects, plus the task's own variables; fast timings for tests."""
    env = {
        "EVAL_DATASET": str(dataset),
        "EVAL_OUTPUT_DIR": str(output),
        "EVAL_MODEL_NAME": "test-model",
        "EVAL_TASK_NAME": "test-task",
        "MAX_CONCURRENCY": "4",
        "MAX_RETRY_PER_QUERY": "0",
        "EVAL_RETRY_BACKOFF_SECONDS": "0.01",
        "EVAL_WAIT_FOR_MODEL_SECONDS": "5",
        "EVAL_REQUEST_TIMEOUT": "5",
        "EVAL_HTTP_PROCESS": HTTP_PROCESS,
    }
    if url is not None:
        env["EVAL_INFERENCE_URL"] = url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_with(env: dict[str, str], seed: int | None = None) -> dict[str, float]:
    """The run in this process; its metrics (RunnerError propagates)."""
    rng = None if seed is None else random.Random(seed)
    return asyncio.run(run.run(config.from_env(env), io.StringIO(), rng))


def journal(path: Path) -> list[dict[str, Any]]:
    records, _ = store.read_journal(path)
    return records


def metrics_file(output: Path) -> dict[str, float]:
    return results.read_file(output)
