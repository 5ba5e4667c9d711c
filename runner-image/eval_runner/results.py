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
import os
import stat
import zlib
from pathlib import Path
from typing import IO, Any, Final

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
# The most of a results file the collector reads (MAX_LARGE_FILE_BYTES: lm-evaluation-
# harness's, which holds every task's configuration, 2.7 KB a task in tests/runner/
# fixtures). Parsed JSON takes up to ~25 times its size in memory (`[{},{},...]`) and the
# collector's limit is 128 MiB (manifests.py): tests/runner/test_result_corpus.py
# measures it. The largest valid metrics.json (MAX_METRICS names of MAX_NAME_LENGTH
# characters outside the BMP, each written as two \uXXXX escapes, indented) is about
# 0.5 MiB.
MAX_FILE_BYTES: Final = 1 << 20
MAX_LARGE_FILE_BYTES: Final = 2 << 20


class MetricsError(ValueError):
    """metrics.json (or an encoded result) is not what the contract says."""


def parse(text: str) -> dict[str, float]:
    """Validate the text of a metrics.json and return its metrics in file order."""
    if not text.strip():
        raise MetricsError(f"{FILE_NAME} is empty")
    return _validate(load_json(text, FILE_NAME))


def load_json(text: str, where: object) -> Any:
    """`text` parsed as JSON; a MetricsError naming `where` (the file) when it is not."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise MetricsError(f"{where} is not valid JSON: {e}") from None
    except RecursionError:
        raise MetricsError(
            f"{where} is nested too deeply (lists or objects inside each other) to be read"
        ) from None
    except ValueError as e:  # an integer of more than sys.get_int_max_str_digits() digits
        raise MetricsError(f"{where} is not valid JSON: {str(e).split(';')[0]}") from None


def shorten(text: str, limit: int = 60) -> str:
    """`text`, cut to `limit` characters (a message must not be a copy of the input)."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def valid_unicode(name: str) -> bool:
    """Whether `name` can be written as UTF-8: not so with a lone surrogate, which a JSON
    escape such as "\\ud800" makes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        if not valid_unicode(name):
            raise MetricsError(
                f"{where}.name {name!r} is not valid Unicode (a lone surrogate); names are "
                "Unicode text"
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
        try:
            shown = json.dumps(value)
        except (RecursionError, ValueError, TypeError):
            shown = "..."
        # Cut short: the value can be a long string or a deep list.
        raise MetricsError(
            f"{where} is a {type(value).__name__} ({shorten(shown)}); "
            "each value must be a finite number"
        )
    try:
        number = float(value)
    except OverflowError:
        raise MetricsError(f"{where} is too large; each value must be a finite number") from None
    if not math.isfinite(number):
        raise MetricsError(f"{where} is {number}; each value must be a finite number")
    return number


def check_inside(path: Path, within: Path) -> Path:
    """Where `path` really is; a MetricsError when that is not inside `within` (the output
    folder): symbolic links are followed only while they stay inside it, so a task cannot
    make the collector read the runner image's own files (/etc/...)."""
    try:
        real = path.resolve()
        inside = real.is_relative_to(within.resolve())
    except RuntimeError:  # Python 3.11: a symbolic link loop
        raise MetricsError(f"{path} is a symbolic link loop") from None
    if not inside:
        raise MetricsError(
            f"{path} is a symbolic link to {real}, outside {within}: the collector reads "
            "only files inside the output folder"
        )
    return real


def open_result(path: Path, within: Path) -> IO[bytes]:
    """`path` opened for reading, if it is a regular file inside `within` (check_inside):
    not a device, nor a FIFO, which would block the collector. FileNotFoundError when
    there is no such file."""
    real = check_inside(path, within)
    if not stat.S_ISREG(real.stat().st_mode):
        raise MetricsError(f"{path} is not a regular file")
    return real.open("rb")


def read_at_most(file: IO[bytes], path: Path, limit: int) -> bytes:
    """The content of `file` (`path`), or a MetricsError when it is over `limit` bytes."""
    data = file.read(limit + 1)
    if len(data) > limit:
        size = max(os.fstat(file.fileno()).st_size, len(data))
        raise MetricsError(
            f"{path} is {size} bytes; the collector reads at most {limit} bytes "
            f"({limit >> 20} MiB) of a results file"
        )
    return data


def read_file(
    output_dir: Path, run_dir: Path | None = None, within: Path | None = None
) -> dict[str, float]:
    """Read and validate metrics.json; `run_dir` holds the probe's start mark, if any;
    `within`: the output folder it must be in (default `output_dir`)."""
    path = output_dir / FILE_NAME
    started = started_mark(output_dir, run_dir)
    try:
        with open_result(path, within or output_dir) as file:
            if started is not None and os.fstat(file.fileno()).st_mtime_ns < started:
                raise MetricsError(
                    f"{path} is older than this run's pod: it was left by an earlier run, "
                    "and this run's task wrote no results"
                )
            data = read_at_most(file, path, MAX_FILE_BYTES)
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


def encode(metrics: dict[str, float], what: str = FILE_NAME) -> str:
    """Encode metrics for the termination message; raise when the result cannot fit.
    `what`: the results the message names (metrics.json, or a framework's files)."""
    raw = json.dumps(metrics, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    message = PREFIX + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    size = len(message.encode("ascii"))
    if size > TERMINATION_MESSAGE_LIMIT:
        raise MetricsError(
            f"{what} holds {len(metrics)} metrics, {size} bytes after compression, "
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
