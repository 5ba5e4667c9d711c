"""The collector: the last container of every evaluation pod.

It reads metrics.json (or, with EVAL_RESULTS_FORMAT, what a framework writes: formats.py)
from the shared output volume, validates it and writes the encoded
result to its termination message, so the operator never mounts user volumes. On bad
input it exits 1 with the reason as its termination message, which becomes the run's
message in status.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Final

from eval_runner import formats, results

DEFAULT_OUTPUT_DIR: Final = "/opt/ml/output"
DEFAULT_TERMINATION_PATH: Final = "/dev/termination-log"


def collect(
    output_dir: Path,
    termination_path: Path,
    run_dir: Path | None = None,
    format_: str = "metrics-json",
    path: str = "",
) -> int:
    what = results.FILE_NAME if format_ == "metrics-json" else f"the {format_} result"
    try:
        metrics = formats.read(output_dir, run_dir, format_, path)
        message = results.encode(metrics, what)
    except results.MetricsError as e:
        return _fail(termination_path, str(e))
    except Exception as e:
        # A defect of the collector's (every bad input must be a MetricsError): the run
        # still fails saying what happened, and the log keeps the traceback.
        traceback.print_exc()
        return _fail(termination_path, f"the collector failed reading the results: {e!r}")
    _write(termination_path, message.encode("ascii"))
    print(
        f"collect: {len(metrics)} metrics, {len(message)} bytes: "
        + ", ".join(f"{name}={value:g}" for name, value in metrics.items())
    )
    return 0


def _fail(termination_path: Path, reason: str) -> int:
    """Exit 1 with `reason` as the termination message: the run's message in status."""
    # UTF-8 (a lone surrogate escaped), cut to the limit at a character's boundary.
    data = reason.encode("utf-8", "backslashreplace")[: results.TERMINATION_MESSAGE_LIMIT]
    _write(termination_path, data.decode("utf-8", "ignore").encode("utf-8"))
    print(f"collect: {reason}", file=sys.stderr)
    return 1


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="eval_runner collect", description=__doc__)
    parser.add_argument(
        "--output-dir",
        default=os.environ.get("EVAL_OUTPUT_DIR", DEFAULT_OUTPUT_DIR),
        help="folder holding metrics.json (default: $EVAL_OUTPUT_DIR)",
    )
    parser.add_argument(
        "--termination-path",
        default=DEFAULT_TERMINATION_PATH,
        help="where Kubernetes reads the termination message",
    )
    args = parser.parse_args(argv)
    run_dir = os.environ.get(results.RUN_DIR_ENV)
    return collect(
        Path(args.output_dir),
        Path(args.termination_path),
        Path(run_dir) if run_dir else None,
        os.environ.get("EVAL_RESULTS_FORMAT") or "metrics-json",
        os.environ.get("EVAL_RESULTS_PATH", ""),
    )
