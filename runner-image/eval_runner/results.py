"""The metrics.json contract and the wire format of a result.

The task writes `$EVAL_OUTPUT_DIR/metrics.json`; the collector validates it here and
encodes it for the pod's termination message, which Kubernetes caps at 4096 bytes. The
operator decodes it with the same module, so the format has exactly one definition.

Wire format: `evalm1:` + base64(zlib(compact JSON object {name: value})). zlib because
metric names repeat prefixes ("subset_x_accuracy") and compress well; base64 because a
termination message is text.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from pathlib import Path
from typing import Any, Final

TERMINATION_MESSAGE_LIMIT: Final = 4096
PREFIX: Final = "evalm1:"
FILE_NAME: Final = "metrics.json"
# Written by the probe when the run's pod starts, into a folder of the pod's own (an
# emptyDir, EVAL_RUN_DIR): a results file older than it is left over from an earlier run
# (a persistent output volume) and is not this run's result. The pod's own folder, so the
# mark never depends on who may write to the output volume.
STARTED_MARKER: Final = "started"
RUN_DIR_ENV: Final = "EVAL_RUN_DIR"
# What one EvalRun record holds at most (it stays far below etcd's object size limit).
MAX_METRICS: Final = 400
MAX_NAME_LENGTH: Final = 100
# The most JSON that `encode` can write for MAX_METRICS metrics: each name's characters
# escaped at most as \uXXXX (6 bytes), quotes, a colon, a float's repr (<= 24) and a comma.
# decode() inflates no more, so a forged result cannot be a zlib bomb.
MAX_DECODED_BYTES: Final = MAX_METRICS * (6 * MAX_NAME_LENGTH + 32) + 2


class MetricsError(ValueError):
    """metrics.json (or an encoded result) is not what the contract says."""


def parse(text: str) -> dict[str, float]:
    """Validate the text of a metrics.json and return its metrics in file order."""
    if not text.strip():
        raise MetricsError(f"{FILE_NAME} is empty")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise MetricsError(f"{FILE_NAME} is not valid JSON: {e}") from None
    return _validate(doc)


def _validate(doc: Any) -> dict[str, float]:
    expected = '{"metrics": [{"name": "accuracy", "value": 0.85}, ...]}'
    if not isinstance(doc, dict) or set(doc) != {"metrics"}:
        got = type(doc).__name__ if not isinstance(doc, dict) else f"keys {sorted(doc)}"
        raise MetricsError(f"{FILE_NAME} must be an object {expected}; got {got}")
    items = doc["metrics"]
    if not isinstance(items, list):
        raise MetricsError(f'{FILE_NAME}: "metrics" must be a list; got {type(items).__name__}')
    metrics: dict[str, float] = {}
    for i, item in enumerate(items):
        where = f"{FILE_NAME}: metrics[{i}]"
        if not isinstance(item, dict) or set(item) != {"name", "value"}:
            raise MetricsError(f'{where} must be an object with exactly "name" and "value"')
        name, value = item["name"], item["value"]
        if not isinstance(name, str) or not name:
            raise MetricsError(f"{where}.name must be a non-empty string")
        if len(name) > MAX_NAME_LENGTH:
            raise MetricsError(
                f"{where}.name is {len(name)} characters long; at most {MAX_NAME_LENGTH} allowed"
            )
        if name in metrics:
            raise MetricsError(f"{where}.name {name!r} is a duplicate; names must be unique")
        metrics[name] = _finite(value, f"{where}.value ({name!r})")
    if len(metrics) > MAX_METRICS:
        raise MetricsError(
            f"{FILE_NAME} holds {len(metrics)} metrics; a run records at most {MAX_METRICS}"
        )
    return metrics


def _finite(value: Any, where: str) -> float:
    # bool is an int in Python, but `true` is no score.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricsError(
            f"{where} is a {type(value).__name__} ({json.dumps(value)}); "
            "each value must be a finite number"
        )
    try:
        number = float(value)
    except OverflowError:
        raise MetricsError(f"{where} is too large; each value must be a finite number") from None
    if not math.isfinite(number):
        raise MetricsError(f"{where} is {number}; each value must be a finite number")
    return number


def read_file(output_dir: Path, run_dir: Path | None = None) -> dict[str, float]:
    """Read and validate metrics.json; `run_dir` holds the probe's start mark, if any."""
    path = output_dir / FILE_NAME
    started = started_mark(output_dir, run_dir)
    try:
        if started is not None and path.stat().st_mtime_ns < started:
            raise MetricsError(
                f"{path} is older than this run's pod: it was left by an earlier run, and "
                "this run's task wrote no results"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise MetricsError(
            f"{path} not found: the task must write its metrics there ($EVAL_OUTPUT_DIR)"
        ) from None
    except OSError as e:
        raise MetricsError(f"{path} could not be read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MetricsError(f"{FILE_NAME} is not UTF-8 text: {e.reason} at byte {e.start}") from None
    return parse(text)


def started_mark(output_dir: Path, run_dir: Path | None) -> int | None:
    """When the probe marked the run's start (ns); None when no probe ran (a pod of
    another layout): nothing to compare with."""
    try:
        return ((run_dir or output_dir) / STARTED_MARKER).stat().st_mtime_ns
    except OSError:
        return None


def encode(metrics: dict[str, float]) -> str:
    """Encode metrics for the termination message; raise when the result cannot fit."""
    raw = json.dumps(metrics, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    message = PREFIX + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    size = len(message.encode("ascii"))
    if size > TERMINATION_MESSAGE_LIMIT:
        raise MetricsError(
            f"{FILE_NAME} holds {len(metrics)} metrics, {size} bytes after compression, "
            f"over the {TERMINATION_MESSAGE_LIMIT}-byte limit of a termination message; "
            "write fewer metrics or shorter names"
        )
    return message


def is_encoded(message: str) -> bool:
    return message.startswith(PREFIX)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = dict(pairs)
    if len(names) != len(pairs):
        raise MetricsError("the collector result names a metric twice")
    return names


def decode(message: str) -> dict[str, float]:
    """The metrics of a termination message, checked again against every limit the
    collector applies: a pod's termination message is whatever its containers wrote, and
    the operator must not record more than a result may hold."""
    if not is_encoded(message):
        raise MetricsError("not a collector result (missing the evalm1: prefix)")
    size = len(message.encode("utf-8"))
    if size > TERMINATION_MESSAGE_LIMIT:
        raise MetricsError(
            f"the collector result is {size} bytes, over the "
            f"{TERMINATION_MESSAGE_LIMIT}-byte limit of a termination message"
        )
    try:
        inflate = zlib.decompressobj()
        compressed = base64.b64decode(message[len(PREFIX) :].strip(), validate=True)
        raw = inflate.decompress(compressed, MAX_DECODED_BYTES)
        if inflate.unconsumed_tail:
            raise MetricsError(
                f"the collector result is larger than the {MAX_DECODED_BYTES} bytes "
                f"{MAX_METRICS} metrics take"
            )
        if not inflate.eof:
            raise zlib.error("incomplete or truncated stream")
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique)
    except MetricsError:
        raise
    # ValueError: also an integer too long to convert; RecursionError: deep nesting.
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MetricsError(f"the collector result is corrupt: {e}") from None
    if not isinstance(doc, dict):
        raise MetricsError("the collector result is corrupt: not an object")
    if len(doc) > MAX_METRICS:
        raise MetricsError(
            f"the collector result holds {len(doc)} metrics; a run records at most {MAX_METRICS}"
        )
    for name in doc:
        if not 0 < len(name) <= MAX_NAME_LENGTH:
            raise MetricsError(
                f"the collector result names a metric of {len(name)} characters; names are "
                f"not empty and at most {MAX_NAME_LENGTH} long"
            )
    return {name: _finite(value, f"result {name[:40]!r}") for name, value in doc.items()}
