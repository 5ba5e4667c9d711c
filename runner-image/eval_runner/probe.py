"""The probe: the first init container of every evaluation pod.

It marks when the pod started, in the pod's own folder EVAL_RUN_DIR (so the collector can
tell this run's results from an earlier run's files on a persistent volume) and, unless
EVAL_PROBE is "false", waits until the model service answers: from the pod's own network,
with the run's auth header, backing off, at most EVAL_PROBE_TIMEOUT_SECONDS. On timeout
it exits 1 with the last error as its termination message, which becomes the run's
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Final

from eval_runner import results, transport, urls
from eval_runner.config import Endpoint
from eval_runner.errors import ModelUnreachable
from eval_runner.waiting import wait_for_model

DEFAULT_TIMEOUT_SECONDS: Final = 1800.0
TERMINATION_PATH: Final = Path("/dev/termination-log")


def stamp(run_dir: Path) -> None:
    """Mark when this run's pod started: results older than the mark are not this run's."""
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / results.STARTED_MARKER
    marker.write_text(f"{os.environ.get('HOSTNAME', '')}\n")


async def _wait(endpoint: Endpoint, limit: float) -> float:
    verify: str | bool = os.environ.get("EVAL_CA_BUNDLE") or True
    async with transport.http_client(1, limit, verify, endpoint.url) as http:
        if endpoint.header_value:
            http.headers[endpoint.header_key] = endpoint.header_value
        return await wait_for_model(
            http, endpoint, limit, sys.stdout, setting="probeTimeoutSeconds"
        )


def probe(env: dict[str, str], termination_path: Path = TERMINATION_PATH) -> int:
    run_dir = Path(env.get(results.RUN_DIR_ENV) or env.get("EVAL_OUTPUT_DIR", "/opt/ml/output"))
    try:
        stamp(run_dir)
    except OSError as e:
        return _fail(termination_path, f"probe: cannot write to {run_dir}: {e.strerror}")
    if env.get("EVAL_PROBE", "true").lower() == "false":
        return 0
    url = env.get("EVAL_INFERENCE_URL", "")
    why = urls.problem(url)
    if why:
        return _fail(termination_path, f"probe: EVAL_INFERENCE_URL {url!r}: {why}")
    try:
        limit = float(env.get("EVAL_PROBE_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))
    except ValueError:
        return _fail(termination_path, "probe: EVAL_PROBE_TIMEOUT_SECONDS is not a number")
    endpoint = Endpoint(
        url=url,
        header_key=env.get("EVAL_AUTHORIZATION_HEADER_KEY", "Authorization"),
        header_value=env.get("EVAL_AUTHORIZATION_HEADER_VALUE") or None,
    )
    try:
        waited = asyncio.run(_wait(endpoint, limit))
    except ModelUnreachable as e:
        return _fail(termination_path, str(e))
    print(f"probe: the model service answered after {waited:.1f}s", flush=True)
    return 0


def _fail(termination_path: Path, message: str) -> int:
    print(message, file=sys.stderr, flush=True)
    with contextlib.suppress(OSError):  # not in a pod: stderr said it
        termination_path.write_text(message[: results.TERMINATION_MESSAGE_LIMIT])
    return 1


def main(argv: list[str] | None = None) -> int:
    del argv  # configured by the environment the operator injects
    return probe(dict(os.environ))
