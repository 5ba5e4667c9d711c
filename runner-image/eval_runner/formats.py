"""Results as evaluation frameworks write them, flattened into the contract's metrics.

`results.format` names the framework. Only the scores are taken: the frameworks' files
also hold their whole configuration, where lm-evaluation-harness copies the model's auth
header (config.model_args, configs.*.metadata); none of it is read.

Metric names (README.md, "Results formats"):
- lm-eval: `<task>/<metric>` for the filter "none", else `<task>/<metric>/<filter>`, from
  `results.<task>["<metric>,<filter>"]` of the newest `results_*.json`; standard errors
  and values that are no number ("N/A") are left out.
- evalscope: `<dataset>/<metric>[/<dimension>=<value>...]` (dimensions by name, then the
  aggregation when it is not the mean), from `metrics[].identity` and `score` of each
  `reports/<model>/<dataset>.json` (schema_version 2); per-subset scores are left out.
- bfcl: `<category>/accuracy`, `<category>/correct_count`, `<category>/total_count` from
  the first line of each `BFCL_v*_<category>_score.json` (the rest lists failed cases).
- opencompass: `<dataset>/<metric>` from the newest `summary/summary_*.csv` (columns
  dataset, version, metric, mode, then one per model), its values as OpenCompass prints
  them (accuracy in percent); with several model columns, `<dataset>/<metric>/<model>`.
  A "-" is a score OpenCompass could not compute: the run fails.

Every file is read only if it is a regular file inside the output folder (a symbolic link
is followed only while it stays inside), and at most results.MAX_FILE_BYTES of it
(MAX_LARGE_FILE_BYTES of lm-eval's, which holds every task's configuration).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from eval_runner import results
from eval_runner.results import (
    MAX_FILE_BYTES,
    MAX_LARGE_FILE_BYTES,
    MAX_METRICS,
    MAX_NAME_LENGTH,
    MetricsError,
    shorten,
)

FORMATS: Final = ("metrics-json", "lm-eval", "evalscope", "opencompass", "bfcl")


@dataclass(frozen=True)
class _Layout:
    """Where a framework writes its results below the output folder, and what the
    messages call them."""

    what: str  # "BFCL scores"
    pattern: str  # for Path.rglob
    shown: str = ""  # how a message names the files; the pattern by default
    keep: Callable[[Path], bool] = bool  # beyond the pattern

    def files(self, root: Path, within: Path) -> list[Path]:
        """The files at or below `root`, or `root` itself if a file, oldest first; a
        MetricsError saying why when there are none, or when one is a symbolic link out of
        `within` (the output folder). Whatever is no file (a dangling link) is skipped."""
        if root.is_file():
            results.check_inside(root, within)
            return [root]
        if not root.is_dir():
            raise MetricsError(f"{root} not found: the task wrote no {self.what} there")
        matching = [p for p in root.rglob(self.pattern) if self.keep(p)]
        for path in matching:
            results.check_inside(path, within)
        found = sorted((p for p in matching if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
        if not found:
            raise MetricsError(
                f"no {self.shown or self.pattern} below {root}: the task wrote no {self.what}"
            )
        return found

    def newest(self, root: Path, within: Path, started: int | None) -> Path:
        """The newest of the files, which this run must have written."""
        path = self.files(root, within)[-1]
        self.check_fresh(path, started)
        return path

    def check_fresh(self, path: Path, started: int | None) -> None:
        """A MetricsError if `path` is older than this run's pod (`started`, ns)."""
        if _written_before(path, started):
            raise MetricsError(
                f"{path} is older than this run's pod: it was left by an earlier run, and "
                f"this run's task wrote no {self.what}"
            )


def _written_before(path: Path, started: int | None) -> bool:
    """Whether `path` is older than this run's pod (`started`, ns): an earlier run's."""
    return started is not None and path.stat().st_mtime_ns < started


def _text(path: Path, within: Path, limit: int = MAX_FILE_BYTES) -> str:
    """The text of the results file `path` (inside `within`, at most `limit` bytes)."""
    try:
        with results.open_result(path, within) as file:
            data = results.read_at_most(file, path, limit)
    except OSError as e:
        raise MetricsError(f"{path} could not be read: {e.strerror}") from None
    return _decoded(data, path)


def _decoded(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MetricsError(f"{path} is not UTF-8 text: {e.reason} at byte {e.start}") from None


def _load(path: Path, within: Path, limit: int = MAX_FILE_BYTES) -> Any:
    return results.load_json(_text(path, within, limit), path)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _put(metrics: dict[str, float], name: str, value: float, path: Path) -> None:
    """metrics[name] = value, if `name` keeps metrics.json's bounds (results.py)."""
    if len(name) > MAX_NAME_LENGTH:
        raise MetricsError(
            f"{path}: the metric name {name[:40]!r}... is {len(name)} characters long; at most "
            f"{MAX_NAME_LENGTH} allowed"
        )
    if not results.valid_unicode(name):
        raise MetricsError(f"{path}: the metric name {shorten(name)!r} is not valid Unicode")
    metrics[name] = value


def _bounded(metrics: dict[str, float], where: Path) -> dict[str, float]:
    if len(metrics) > MAX_METRICS:
        raise MetricsError(
            f"{where}: the results hold {len(metrics)} scores; a run records at most {MAX_METRICS}"
        )
    return metrics


_LM_EVAL: Final = _Layout("lm-evaluation-harness results", "results_*.json")


def lm_eval(root: Path, started: int | None, within: Path) -> dict[str, float]:
    path = _LM_EVAL.newest(root, within, started)
    doc = _load(path, within, MAX_LARGE_FILE_BYTES)
    results = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(results, dict) or not results:
        raise MetricsError(f'{path} has no "results" object: not an lm-eval results file')
    metrics: dict[str, float] = {}
    for task, values in results.items():
        if not isinstance(values, dict):
            raise MetricsError(f"{path}: results.{shorten(task)} is not an object")
        for key, value in values.items():
            metric, sep, filter_name = str(key).partition(",")
            number = _number(value)
            if not sep or metric.endswith("_stderr") or number is None:
                continue  # name, alias, sample_len; standard errors; "N/A"
            name = f"{task}/{metric}" if filter_name == "none" else f"{task}/{metric}/{filter_name}"
            _put(metrics, name, number, path)
    if not metrics:
        raise MetricsError(f"{path} holds no numeric score in results")
    return _bounded(metrics, path)


_EVALSCOPE: Final = _Layout(
    "evalscope reports", "reports/*/*.json", "reports/<model>/<dataset>.json"
)


def evalscope(root: Path, started: int | None, within: Path) -> dict[str, float]:
    files = _EVALSCOPE.files(root, within)
    metrics: dict[str, float] = {}
    # Oldest first: a dataset evaluated twice keeps the newer report's scores.
    for path in files:
        if _written_before(path, started):
            continue  # an earlier run's report, in a work dir it shares
        doc = _load(path, within)
        items = doc.get("metrics") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise MetricsError(f'{path} has no "metrics" list: not an evalscope report')
        dataset = str(doc.get("dataset_name") or path.stem)
        for i, item in enumerate(items):
            identity = item.get("identity") if isinstance(item, dict) else None
            score = _number(item.get("score")) if isinstance(item, dict) else None
            if not isinstance(identity, dict) or not identity.get("name") or score is None:
                raise MetricsError(f"{path}: metrics[{i}] has no identity.name and numeric score")
            parts = [dataset, str(identity["name"])]
            dimensions = identity.get("dimensions") or {}
            if not isinstance(dimensions, dict):
                raise MetricsError(
                    f"{path}: metrics[{i}].identity.dimensions is a "
                    f"{type(dimensions).__name__}, not an object"
                )
            parts += [f"{k}={dimensions[k]}" for k in sorted(dimensions)]
            if identity.get("aggregation") not in (None, "mean"):
                parts.append(str(identity["aggregation"]))
            _put(metrics, "/".join(parts), score, path)
    if not metrics:
        raise MetricsError(f"no evalscope report below {root} was written during this run")
    return _bounded(metrics, root)


_BFCL_SCORE: Final = re.compile(r"^BFCL_v\d+_(?P<category>.+)_score\.json$")
_BFCL_KEYS: Final = ("accuracy", "correct_count", "total_count")
_BFCL: Final = _Layout(
    "BFCL scores",
    "BFCL_v*_score.json",
    "BFCL_v*_<category>_score.json",
    lambda p: bool(_BFCL_SCORE.match(p.name)),
)


def bfcl(root: Path, started: int | None, within: Path) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for path in sorted(_BFCL.files(root, within)):
        _BFCL.check_fresh(path, started)
        match = _BFCL_SCORE.match(path.name)
        category = match["category"] if match else path.stem
        # Only the first line: the rest lists the failed cases, and can be long.
        try:
            with results.open_result(path, within) as file:
                line = file.readline(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise MetricsError(f"{path} could not be read: {e.strerror}") from None
        if len(line) > MAX_FILE_BYTES:
            raise MetricsError(
                f"{path}: its first line is longer than {MAX_FILE_BYTES} bytes "
                f"({MAX_FILE_BYTES >> 20} MiB), the most the collector reads of it"
            )
        try:
            first = json.loads(_decoded(line, path))
        except RecursionError:
            raise MetricsError(f"{path}: its first line is nested too deeply") from None
        except ValueError as e:  # also JSONDecodeError
            reason = str(e).split(";")[0]
            raise MetricsError(f"{path}: its first line is not a JSON object: {reason}") from None
        if not isinstance(first, dict) or any(_number(first.get(k)) is None for k in _BFCL_KEYS):
            raise MetricsError(
                f"{path}: its first line must hold numbers {', '.join(_BFCL_KEYS)}; "
                "not a BFCL score file"
            )
        for key in _BFCL_KEYS:
            _put(metrics, f"{category}/{key}", float(first[key]), path)
    return _bounded(metrics, root)


_OPENCOMPASS_COLUMNS: Final = ("dataset", "version", "metric", "mode")
_OPENCOMPASS: Final = _Layout(
    "OpenCompass summary",
    "summary_*.csv",
    "summary/summary_*.csv",
    lambda p: p.parent.name == "summary",
)


def opencompass(root: Path, started: int | None, within: Path) -> dict[str, float]:
    path = _OPENCOMPASS.newest(root, within, started)
    text = _text(path, within)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise MetricsError(f"{path} is not valid CSV: {e}") from None
    header = rows[0] if rows else []
    models = header[len(_OPENCOMPASS_COLUMNS) :]
    if tuple(header[: len(_OPENCOMPASS_COLUMNS)]) != _OPENCOMPASS_COLUMNS or not models:
        raise MetricsError(
            f"{path}: its header must be {','.join(_OPENCOMPASS_COLUMNS)} and a column per "
            f"model, not {shorten(','.join(header))!r}: not an OpenCompass summary"
        )
    metrics: dict[str, float] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise MetricsError(
                f"{path}: line {line} has {len(row)} columns, the header {len(header)}"
            )
        dataset, _version, metric, _mode, *values = row
        if dataset.startswith("-"):
            continue  # a summarizer's group heading ("--------- Exam ---------,-,-,-,-")
        for model, value in zip(models, values, strict=True):
            name = f"{dataset}/{metric}" if len(models) == 1 else f"{dataset}/{metric}/{model}"
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise MetricsError(
                    f"{path}: {shorten(dataset)} has no score for {shorten(model)} "
                    f"({shorten(value)!r}): OpenCompass "
                    "could not evaluate it (its logs/ say why)"
                )
            _put(metrics, name, number, path)
    if not metrics:
        raise MetricsError(f"{path} holds no scores")
    return _bounded(metrics, path)


READERS: Final[dict[str, Callable[[Path, int | None, Path], dict[str, float]]]] = {
    "lm-eval": lm_eval,
    "evalscope": evalscope,
    "opencompass": opencompass,
    "bfcl": bfcl,
}


def read(output_dir: Path, run_dir: Path | None, format_: str, path: str) -> dict[str, float]:
    """The run's metrics from what the task wrote under `output_dir` in `format_`;
    `path`: a file or folder below it (default: all of it)."""
    if Path(path).is_absolute() or ".." in Path(path).parts:
        raise MetricsError(f"EVAL_RESULTS_PATH={path!r} must be a path below EVAL_OUTPUT_DIR")
    if format_ == "metrics-json":
        return results.read_file(output_dir / path if path else output_dir, run_dir, output_dir)
    reader = READERS.get(format_)
    if reader is None:
        raise MetricsError(f"EVAL_RESULTS_FORMAT={format_!r} is none of {', '.join(FORMATS)}")
    # Each reader keeps the bounds metrics.json has (results.py): _put, _bounded.
    return reader(output_dir / path, results.started_mark(output_dir, run_dir), output_dir)
