"""A corpus of results files through the real collector, run as the evaluation pod runs it.

Each case writes an output folder after the probe's start mark, runs `python -m
eval_runner collect` in a process of its own with the collector container's command and
environment from the Job the operator builds (manifests.build_job; its mount paths moved
into a temporary folder, the termination message into a file), and reads the termination
message as the operator does (results.decode). Every case ends as either a clear failure
(exit 1, a termination message naming the file and saying what was wrong) or exactly the
expected metrics, in order; never with a traceback, a hang, or more memory than the
container's limit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from eval_operator import manifests, spec
from eval_runner import probe, results

FIXTURES = Path(__file__).parent / "fixtures"
[LM_EVAL] = (FIXTURES / "lm-eval-0.4.13").glob("results_*.json")
[EVALSCOPE] = (FIXTURES / "evalscope-1.14.1").glob("*/reports/m1/general_qa.json")
[OPENCOMPASS] = (FIXTURES / "opencompass-0.5.4").glob("*/summary/summary_*.csv")
BFCL = (
    FIXTURES / "bfcl-2026.3.23" / "score" / "m1" / "non_live" / "BFCL_v4_simple_python_score.json"
)

# The runner image's own environment (runner-image/Dockerfile's ENV; no LANG, as on the
# local cluster's base image: Python then writes UTF-8 all the same); the Job adds the
# collector container's env.
IMAGE_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
TIMEOUT_SECONDS = 60
MIB = 1 << 20

# Where the cases' files go (EVAL_RESULTS_PATH "": the format's default, but in PATH_CASES).
METRICS = "metrics.json"
LM = "lm_eval/m1/results_2026-12-02T07-35-07.635688.json"
ES = "20261202_074720/reports/m1/general_qa.json"
OC = "20261202_125818/summary/summary_20261202_125818.csv"
BF = "score/m1/non_live/BFCL_v4_simple_python_score.json"


@dataclass(frozen=True)
class Link:
    """A symbolic link to `target`; "{outside}" stands for a folder beside the output's."""

    target: str


@dataclass(frozen=True)
class Fifo:
    pass


@dataclass(frozen=True)
class Folder:
    pass


@dataclass(frozen=True)
class Earlier:
    """A file written before the run's pod started (a persistent volume's earlier run)."""

    content: str | bytes


Content = str | bytes | Callable[[], str | bytes] | Link | Fifo | Folder | Earlier


@dataclass(frozen=True)
class Ok:
    metrics: list[tuple[str, float]]


@dataclass(frozen=True)
class Fails:
    file: str  # what the message must name: the file's name, or a folder's
    words: tuple[str, ...]


def ok(*metrics: tuple[str, float]) -> Ok:
    return Ok(list(metrics))


def fails(file: str, *words: str) -> Fails:
    return Fails(file, words)


def doc(*metrics: tuple[Any, Any]) -> str:
    return json.dumps({"metrics": [{"name": n, "value": v} for n, v in metrics]})


def metric_value(text: str) -> str:
    """A metrics.json with one metric `a` whose value is written as `text`."""
    return '{"metrics": [{"name": "a", "value": ' + text + "}]}"


def cut(path: Path, fraction: float = 0.5) -> bytes:
    """The first part of a real file, as a task killed while writing it leaves it."""
    data = path.read_bytes()
    return data[: int(len(data) * fraction)]


def lm_eval_doc(scores: dict[str, Any]) -> str:
    return json.dumps({"results": scores})


def within_size(prefix: str, unit: str, suffix: str, size: int) -> str:
    """prefix + unit * n + suffix, as long as possible within `size` bytes."""
    return prefix + unit * ((size - len(prefix) - len(suffix)) // len(unit)) + suffix


UNICODE_NAMES = [
    ("准确率", 0.85),
    ("f1—macro", 0.5),
    ("émoji 🎯", 1),
    ("名" * 100, 0.25),
    ("🎯" * 100, -0.0025),
    ("tab\tand\nnewline", 2),
]
EVALSCOPE_METRICS = [
    ("general_qa/rouge/ngram=1/statistic=recall", 0.5),
    ("general_qa/rouge/ngram=1/statistic=precision", 0.5),
    ("general_qa/rouge/ngram=1/statistic=f1", 0.5),
    ("general_qa/rouge/ngram=2/statistic=recall", 0.0),
    ("general_qa/rouge/ngram=2/statistic=precision", 0.0),
    ("general_qa/rouge/ngram=2/statistic=f1", 0.0),
    ("general_qa/rouge/statistic=recall/variant=l", 0.5),
    ("general_qa/rouge/statistic=precision/variant=l", 0.5),
    ("general_qa/rouge/statistic=f1/variant=l", 0.5),
]
# 400 names of 100 characters outside the BMP: each is 12 bytes in JSON (a surrogate pair).
LARGEST = [(f"{i:03d}" + "🎯" * 97, -1 / 3) for i in range(400)]
OC_HEADER = "dataset,version,metric,mode,m1\n"
BFCL_LINE = '{"accuracy": 0.49, "correct_count": 196, "total_count": 400}\n'

METRICS_JSON_CASES = [
    pytest.param({METRICS: ""}, fails(METRICS, "is empty"), id="an empty metrics.json fails"),
    pytest.param(
        {METRICS: '{"metrics": [{"name": "accuracy", "val'},
        fails(METRICS, "is not valid JSON"),
        id="truncated JSON fails as not valid JSON",
    ),
    pytest.param(
        {METRICS: lambda: doc(*((f"m{i:07d}", 0.5) for i in range(330_000)))},
        fails(METRICS, "the collector reads at most 1048576 bytes (1 MiB)"),
        id="a 10 MB metrics.json fails at the size limit before it is parsed",
    ),
    pytest.param(
        {METRICS: lambda: doc(("accuracy", 0.5)) + " " * (10 * MIB)},
        fails(METRICS, "bytes; the collector reads at most 1048576 bytes"),
        id="a valid metrics.json padded to 10 MB fails at the size limit",
    ),
    pytest.param(
        {METRICS: lambda: within_size(doc(("accuracy", 0.5)), " ", "", MIB)},
        ok(("accuracy", 0.5)),
        id="a valid metrics.json of exactly 1 MiB is read",
    ),
    pytest.param(
        {METRICS: "[" * 100_000},
        fails(METRICS, "nested too deeply"),
        id="100k levels of [ fail as nested too deeply",
    ),
    pytest.param(
        {METRICS: metric_value("[" * 100_000 + "]" * 100_000)},
        fails(METRICS, "nested too deeply"),
        id="a value nested 100k lists deep fails as nested too deeply",
    ),
    pytest.param(
        {METRICS: '[{"name": "accuracy", "value": 0.5}]'},
        fails(METRICS, "must be an object", "got list"),
        id="a list at the top level fails",
    ),
    pytest.param(
        {METRICS: '{"metrics": {"accuracy": 0.5}}'},
        fails(METRICS, '"metrics" must be a list; got dict'),
        id="metrics as an object fails",
    ),
    pytest.param(
        {METRICS: '{"metrics": "accuracy=0.5"}'},
        fails(METRICS, '"metrics" must be a list; got str'),
        id="metrics as a string fails",
    ),
    pytest.param(
        {METRICS: '{"metrics": [{"name": "a", "value": 1}, {"value": 0.5}]}'},
        fails(METRICS, 'metrics[1] must be an object with exactly "name" and "value"'),
        id="a metric without a name fails naming its index",
    ),
    pytest.param(
        {METRICS: '{"metrics": [{"name": "accuracy"}]}'},
        fails(METRICS, 'metrics[0] must be an object with exactly "name" and "value"'),
        id="a metric without a value fails",
    ),
    pytest.param(
        {METRICS: metric_value("NaN")},
        fails(METRICS, "metrics[0].value ('a') is nan; each value must be a finite number"),
        id="a NaN value fails",
    ),
    pytest.param(
        {METRICS: metric_value("Infinity")},
        fails(METRICS, "metrics[0].value ('a') is inf"),
        id="an Infinity value fails",
    ),
    pytest.param(
        {METRICS: metric_value("-Infinity")},
        fails(METRICS, "metrics[0].value ('a') is -inf"),
        id="a -Infinity value fails",
    ),
    pytest.param({METRICS: metric_value("1e308")}, ok(("a", 1e308)), id="1e308 is a finite value"),
    pytest.param(
        {METRICS: metric_value("-1e308")}, ok(("a", -1e308)), id="-1e308 is a finite value"
    ),
    pytest.param(
        {METRICS: metric_value("1e309")},
        fails(METRICS, "metrics[0].value ('a') is inf"),
        id="1e309 overflows to inf and fails",
    ),
    pytest.param(
        {METRICS: metric_value("1" + "0" * 400)},
        fails(METRICS, "metrics[0].value ('a') is too large"),
        id="an integer of 401 digits is too large for a float and fails",
    ),
    pytest.param(
        {METRICS: metric_value("1" * 5000)},
        fails(METRICS, "is not valid JSON", "Exceeds the limit (4300 digits)"),
        id="an integer of 5000 digits fails",
    ),
    pytest.param(
        {METRICS: metric_value('"0.85"')},
        fails(METRICS, "metrics[0].value ('a') is a str (\"0.85\"); each value must be a"),
        id="a string value fails",
    ),
    pytest.param(
        {METRICS: lambda: metric_value(json.dumps("x" * 500_000))},
        fails(METRICS, 'is a str ("xxxxxxxx', "...); each value must be a finite number"),
        id="a long string value fails with the value cut short",
    ),
    pytest.param(
        {METRICS: metric_value("true")},
        fails(METRICS, "metrics[0].value ('a') is a bool (true)"),
        id="a boolean value fails",
    ),
    pytest.param(
        {METRICS: metric_value("null")},
        fails(METRICS, "metrics[0].value ('a') is a NoneType (null)"),
        id="a null value fails",
    ),
    pytest.param(
        {METRICS: metric_value("[0.5]")},
        fails(METRICS, "metrics[0].value ('a') is a list ([0.5])"),
        id="a list value fails",
    ),
    pytest.param(
        {METRICS: doc(("accuracy", 0.5), ("f1", 0.25), ("accuracy", 0.75))},
        fails(METRICS, "metrics[2].name 'accuracy' is a duplicate; names must be unique"),
        id="duplicate names fail",
    ),
    pytest.param(
        {
            METRICS: json.dumps(
                {"metrics": [dict(name=n, value=v) for n, v in UNICODE_NAMES]}, ensure_ascii=False
            )
        },
        ok(*UNICODE_NAMES),
        id="unicode names written as UTF-8 round-trip exactly",
    ),
    pytest.param(
        {METRICS: doc(*UNICODE_NAMES)},
        ok(*UNICODE_NAMES),
        id="unicode names written as escapes and surrogate pairs round-trip exactly",
    ),
    pytest.param(
        {METRICS: metric_value("1").replace('"a"', '"\\ud800"')},
        fails(METRICS, "metrics[0].name '\\ud800' is not valid Unicode"),
        id="a name with a lone surrogate fails",
    ),
    pytest.param(
        {METRICS: doc(("a" * 101, 1))},
        fails(METRICS, "metrics[0].name is 101 characters long; at most 100 allowed"),
        id="a name over the length limit fails",
    ),
    pytest.param(
        {METRICS: doc(("名" * 101, 1))},
        fails(METRICS, "metrics[0].name is 101 characters long; at most 100 allowed"),
        id="a name of 101 CJK characters fails",
    ),
    pytest.param(
        {METRICS: doc(("", 1))},
        fails(METRICS, "metrics[0].name must be a non-empty string"),
        id="an empty name fails",
    ),
    pytest.param(
        {METRICS: b'{"metrics": [{"name": "\xff", "value": 1}]}'},
        fails(METRICS, "is not UTF-8 text"),
        id="bytes that are not UTF-8 fail",
    ),
    pytest.param(
        {METRICS: "\ufeff" + doc(("accuracy", 0.5))},
        fails(METRICS, "is not valid JSON", "BOM"),
        id="a byte order mark fails",
    ),
    pytest.param(
        {METRICS: lambda: doc(*((f"m{i:05d}", 0.5) for i in range(10_000)))},
        fails(METRICS, "holds 10000 metrics; a run records at most 400"),
        id="10000 metrics fail at the count limit",
    ),
    pytest.param(
        {METRICS: lambda: doc(*((f"m{i:03d}", 0.5) for i in range(401)))},
        fails(METRICS, "holds 401 metrics; a run records at most 400"),
        id="401 metrics fail at the count limit",
    ),
    pytest.param(
        {METRICS: lambda: doc(*((f"m{i:03d}", round(i / 7, 4)) for i in range(400)))},
        ok(*((f"m{i:03d}", round(i / 7, 4)) for i in range(400))),
        id="400 metrics are all recorded in order",
    ),
    pytest.param(
        {
            METRICS: lambda: doc(
                *((f"{i:03d}" + os.urandom(48).hex()[:97], i / 7) for i in range(400))
            )
        },
        fails(METRICS, "over the 4096-byte limit of a termination message"),
        id="400 metrics of long random names fail at the termination message limit",
    ),
    pytest.param(
        {
            METRICS: lambda: json.dumps(
                {"metrics": [dict(name=n, value=v) for n, v in LARGEST]}, indent=4
            )
        },
        ok(*LARGEST),
        id="the largest metrics.json the contract allows, 0.5 MB, is recorded",
    ),
    pytest.param(
        {METRICS: doc(("zeta", 1), ("alpha", 0.5), ("mid", -3))},
        ok(("zeta", 1.0), ("alpha", 0.5), ("mid", -3.0)),
        id="metrics keep the order of the file",
    ),
    pytest.param(
        {METRICS: doc(("accuracy", 0.85))},
        ok(("accuracy", 0.85)),
        id="the smallest valid metrics.json is recorded",
    ),
    pytest.param({}, fails(METRICS, "not found"), id="no metrics.json fails"),
    pytest.param(
        {METRICS: Link("/etc/passwd")},
        fails(METRICS, "is a symbolic link to /etc/passwd, outside", "inside the output folder"),
        id="a metrics.json linking to /etc/passwd is refused",
    ),
    pytest.param(
        {METRICS: Link("{outside}/metrics.json")},
        fails(METRICS, "is a symbolic link to", "outside"),
        id="a metrics.json linking to a valid file outside the output folder is refused",
    ),
    pytest.param(
        {METRICS: Link("/dev/zero")},
        fails(METRICS, "is a symbolic link to /dev/zero, outside"),
        id="a metrics.json linking to an endless device is refused",
    ),
    pytest.param(
        {METRICS: Link("results/final.json"), "results/final.json": doc(("accuracy", 0.5))},
        ok(("accuracy", 0.5)),
        id="a metrics.json linking to a file inside the output folder is followed",
    ),
    pytest.param(
        {METRICS: Link("metrics.json")},
        fails(METRICS, "is a symbolic link loop"),
        id="a metrics.json linking to itself fails",
    ),
    pytest.param(
        {METRICS: Link("missing.json")}, fails(METRICS, "not found"), id="a dangling link fails"
    ),
    pytest.param(
        {METRICS: Fifo()},
        fails(METRICS, "is not a regular file"),
        id="a metrics.json that is a FIFO fails instead of blocking the collector",
    ),
    pytest.param(
        {METRICS: Folder()},
        fails(METRICS, "is not a regular file"),
        id="a metrics.json that is a folder fails",
    ),
    pytest.param(
        {METRICS: Earlier(doc(("accuracy", 0.5)))},
        fails(METRICS, "is older than this run's pod: it was left by an earlier run"),
        id="a metrics.json older than the pod start is an earlier run's and fails",
    ),
]

LM_EVAL_CASES = [
    pytest.param(
        {LM: LM_EVAL.read_bytes()},
        ok(("capitals/exact_match/strict", 0.5), ("capitals_raw/exact_match", 0.5)),
        id="lm-eval: the real results file gives its scores",
    ),
    pytest.param(
        {LM: lm_eval_doc({"t": {"acc,none": 0.5}})},
        ok(("t/acc", 0.5)),
        id="lm-eval: the smallest valid results file gives its score",
    ),
    pytest.param(
        {LM: cut(LM_EVAL)},
        fails("results_2026-12-02T07-35-07.635688.json", "is not valid JSON"),
        id="lm-eval: a truncated results file fails",
    ),
    pytest.param(
        {LM: '{"results": [{"acc,none": 0.5}]}'},
        fails("results_2026", 'has no "results" object'),
        id="lm-eval: results as a list fails",
    ),
    pytest.param(
        {LM: '{"configs": {}}'},
        fails("results_2026", 'has no "results" object'),
        id="lm-eval: a file without results fails",
    ),
    pytest.param(
        {LM: lm_eval_doc({"t": 0.5})},
        fails("results_2026", "results.t is not an object"),
        id="lm-eval: a task's scores as a number fail",
    ),
    pytest.param(
        {LM: lm_eval_doc({"t": {"alias": "t", "acc,none": "N/A", "acc_stderr,none": 0.1}})},
        fails("results_2026", "holds no numeric score"),
        id="lm-eval: a file of no numeric score fails",
    ),
    pytest.param(
        {LM: '{"results": {"t": {"acc,none": 1' + "0" * 400 + ', "f1,none": 0.5}}}'},
        ok(("t/f1", 0.5)),
        id="lm-eval: a score too large for a float is left out like N/A",
    ),
    pytest.param(
        {LM: '{"results": {"t": {"acc,none": ' + "1" * 5000 + "}}}"},
        fails("results_2026", "is not valid JSON", "Exceeds the limit"),
        id="lm-eval: an integer of 5000 digits fails",
    ),
    pytest.param(
        {LM: '{"results": {"t": {"acc,none": 0.5}}, "configs": ' + "[" * 100_000},
        fails("results_2026", "nested too deeply"),
        id="lm-eval: configs nested 100k levels deep fail",
    ),
    pytest.param(
        {LM: lambda: lm_eval_doc({f"task{i:03d}": {"acc,none": 0.5} for i in range(401)})},
        fails("results_2026", "the results hold 401 scores; a run records at most 400"),
        id="lm-eval: 401 scores fail at the count limit",
    ),
    pytest.param(
        {LM: lm_eval_doc({"t" * 100: {"acc,none": 0.5}})},
        fails("results_2026", "is 104 characters long; at most 100 allowed"),
        id="lm-eval: a name over the length limit fails",
    ),
    pytest.param(
        {LM: '{"results": {"\\udc00": {"acc,none": 0.5}}}'},
        fails("results_2026", "is not valid Unicode"),
        id="lm-eval: a task name with a lone surrogate fails",
    ),
    pytest.param(
        {LM: '{"results": {"\\udc00": 1}}'},
        fails("results_2026", "results.\\udc00 is not an object"),
        id="lm-eval: a lone surrogate in the message is escaped",
    ),
    pytest.param(
        {
            LM: lambda: within_size(
                '{"results": {"t": {"acc,none": 0.5}}, "configs": [', "{},", "{}]}", 2 * MIB
            )
        },
        ok(("t/acc", 0.5)),
        id="lm-eval: 2 MiB of empty objects, the worst within the limit, fit in memory",
    ),
    pytest.param(
        {
            LM: lambda: within_size(
                '{"results": {"t": {"acc,none": 0.5}}, "configs": "', "x", '"}', 10 * MIB
            )
        },
        fails("results_2026", "the collector reads at most 2097152 bytes (2 MiB)"),
        id="lm-eval: a 10 MB results file fails at the size limit",
    ),
    pytest.param(
        {LM: Earlier(LM_EVAL.read_bytes())},
        fails("results_2026", "is older than this run's pod"),
        id="lm-eval: a results file older than the pod start fails",
    ),
    pytest.param(
        {LM: Link("/etc/passwd")},
        fails("results_2026", "is a symbolic link to /etc/passwd, outside"),
        id="lm-eval: a results file linking to /etc/passwd is refused",
    ),
    pytest.param(
        {
            "lm_eval/m1/results_2026-12-03T00-00-00.json": Link("gone.json"),
            LM: LM_EVAL.read_bytes(),
        },
        ok(("capitals/exact_match/strict", 0.5), ("capitals_raw/exact_match", 0.5)),
        id="lm-eval: a dangling results link beside the real file is skipped",
    ),
    pytest.param(
        {"lm_eval/m2": Link("{outside}")},
        fails("eval-output", r"no results_*.json below"),
        id="lm-eval: a folder linking out of the output folder is not searched",
    ),
]

EVALSCOPE_CASES = [
    pytest.param(
        {ES: EVALSCOPE.read_bytes()},
        ok(*EVALSCOPE_METRICS),
        id="evalscope: the real report gives its scores",
    ),
    pytest.param(
        {"reports/m1/qa.json": '{"metrics": [{"identity": {"name": "acc"}, "score": 0.5}]}'},
        ok(("qa/acc", 0.5)),
        id="evalscope: the smallest valid report gives its score",
    ),
    pytest.param(
        {ES: cut(EVALSCOPE)},
        fails("general_qa.json", "is not valid JSON"),
        id="evalscope: a truncated report fails",
    ),
    pytest.param(
        {ES: '{"metrics": {"rouge": 0.5}}'},
        fails("general_qa.json", 'has no "metrics" list'),
        id="evalscope: metrics as an object fails",
    ),
    pytest.param(
        {ES: '[{"identity": {"name": "acc"}, "score": 0.5}]'},
        fails("general_qa.json", 'has no "metrics" list'),
        id="evalscope: a list at the top level fails",
    ),
    pytest.param(
        {ES: '{"metrics": [{"identity": {"name": "acc"}, "score": "0.5"}]}'},
        fails("general_qa.json", "metrics[0] has no identity.name and numeric score"),
        id="evalscope: a score as a string fails",
    ),
    pytest.param(
        {ES: '{"metrics": [{"score": 0.5}]}'},
        fails("general_qa.json", "metrics[0] has no identity.name"),
        id="evalscope: a metric without identity fails",
    ),
    pytest.param(
        {ES: '{"metrics": [{"identity": {"name": "acc", "dimensions": ["f1"]}, "score": 1}]}'},
        fails("general_qa.json", "metrics[0].identity.dimensions is a list, not an object"),
        id="evalscope: dimensions as a list fail",
    ),
    pytest.param(
        {ES: '{"metrics": [{"identity": {"name": "acc", "dimensions": "f1"}, "score": 1}]}'},
        fails("general_qa.json", "metrics[0].identity.dimensions is a str, not an object"),
        id="evalscope: dimensions as a string fail",
    ),
    pytest.param(
        {ES: '{"metrics": ' + "[" * 100_000},
        fails("general_qa.json", "nested too deeply"),
        id="evalscope: a report nested 100k levels deep fails",
    ),
    pytest.param(
        {ES: Earlier(EVALSCOPE.read_bytes())},
        fails("eval-output", "no evalscope report below", "was written during this run"),
        id="evalscope: a report older than the pod start is an earlier run's and fails",
    ),
    pytest.param(
        {ES: Link("/etc/hostname")},
        fails("general_qa.json", "is a symbolic link to /etc/hostname, outside"),
        id="evalscope: a report linking out of the output folder is refused",
    ),
]

OPENCOMPASS_CASES = [
    pytest.param(
        {OC: OPENCOMPASS.read_bytes()},
        ok(("capitals/accuracy", 50.0), ("colors/accuracy", 25.0)),
        id="opencompass: the real summary gives its scores",
    ),
    pytest.param(
        {"summary/summary_1.csv": OC_HEADER + "d,v,accuracy,gen,1\n"},
        ok(("d/accuracy", 1.0)),
        id="opencompass: the smallest valid summary gives its score",
    ),
    pytest.param(
        {OC: OC_HEADER + "capitals,359d58,accu"},
        fails("summary_20261202_125818.csv", "line 2 has 3 columns, the header 5"),
        id="opencompass: a truncated summary fails",
    ),
    pytest.param(
        {OC: ""},
        fails("summary_20261202_125818.csv", "its header must be", "not an OpenCompass summary"),
        id="opencompass: an empty summary fails",
    ),
    pytest.param(
        {OC: "dataset,metric,m1\ncapitals,accuracy,50.00\n"},
        fails("summary_20261202_125818.csv", "not an OpenCompass summary"),
        id="opencompass: a summary without the version and mode columns fails",
    ),
    pytest.param(
        {OC: OC_HEADER + "capitals,359d58,accuracy,gen,-\n"},
        fails("summary_20261202_125818.csv", "capitals has no score for m1 ('-')"),
        id="opencompass: a dataset it could not score fails",
    ),
    pytest.param(
        {OC: OC_HEADER + "capitals,359d58,accuracy,gen,fifty\n"},
        fails("summary_20261202_125818.csv", "capitals has no score for m1 ('fifty')"),
        id="opencompass: a score that is no number fails",
    ),
    pytest.param(
        {OC: OC_HEADER},
        fails("summary_20261202_125818.csv", "holds no scores"),
        id="opencompass: a header alone fails",
    ),
    pytest.param(
        {OC: lambda: OC_HEADER + "capitals,1,accuracy,gen," + "5" * 200_000 + "\n"},
        fails("summary_20261202_125818.csv", "is not valid CSV", "field larger than field limit"),
        id="opencompass: a field over the csv module's limit fails",
    ),
    pytest.param(
        {OC: lambda: within_size(OC_HEADER, "x", "\n", 2 * MIB)},
        fails("summary_20261202_125818.csv", "the collector reads at most 1048576 bytes"),
        id="opencompass: a 2 MiB summary fails at the size limit",
    ),
    pytest.param(
        {OC: b"\xff\xfe" + OC_HEADER.encode("utf-16-le")},
        fails("summary_20261202_125818.csv", "is not UTF-8 text"),
        id="opencompass: a UTF-16 summary fails",
    ),
    pytest.param(
        {OC: Earlier(OPENCOMPASS.read_bytes())},
        fails("summary_20261202_125818.csv", "is older than this run's pod"),
        id="opencompass: a summary older than the pod start fails",
    ),
]

BFCL_CASES = [
    pytest.param(
        {BF: BFCL.read_bytes()},
        ok(
            ("simple_python/accuracy", 0.49),
            ("simple_python/correct_count", 196.0),
            ("simple_python/total_count", 400.0),
        ),
        id="bfcl: the real score file gives its scores",
    ),
    pytest.param(
        {"BFCL_v4_x_score.json": '{"accuracy": 1, "correct_count": 1, "total_count": 1}'},
        ok(("x/accuracy", 1.0), ("x/correct_count", 1.0), ("x/total_count", 1.0)),
        id="bfcl: the smallest valid score file gives its scores",
    ),
    pytest.param(
        {BF: BFCL_LINE[:25]},
        fails("BFCL_v4_simple_python_score.json", "its first line is not a JSON object"),
        id="bfcl: a truncated first line fails",
    ),
    pytest.param(
        {BF: ""},
        fails("BFCL_v4_simple_python_score.json", "its first line is not a JSON object"),
        id="bfcl: an empty score file fails",
    ),
    pytest.param(
        {BF: '{"accuracy": "high", "correct_count": 196, "total_count": 400}\n'},
        fails("BFCL_v4_simple_python_score.json", "must hold numbers accuracy, correct_count"),
        id="bfcl: an accuracy that is no number fails",
    ),
    pytest.param(
        {BF: '{"accuracy": 0.49, "correct_count": 196}\n'},
        fails("BFCL_v4_simple_python_score.json", "must hold numbers", "total_count"),
        id="bfcl: a first line without total_count fails",
    ),
    pytest.param(
        {BF: "[0.49, 196, 400]\n"},
        fails("BFCL_v4_simple_python_score.json", "must hold numbers"),
        id="bfcl: a first line that is a list fails",
    ),
    pytest.param(
        {BF: '{"accuracy": true, "correct_count": 196, "total_count": 400}\n'},
        fails("BFCL_v4_simple_python_score.json", "must hold numbers"),
        id="bfcl: a boolean accuracy fails",
    ),
    pytest.param(
        {BF: "[" * 100_000 + "\n"},
        fails("BFCL_v4_simple_python_score.json", "its first line is nested too deeply"),
        id="bfcl: a first line nested 100k levels deep fails",
    ),
    pytest.param(
        {BF: '{"accuracy": ' + "1" * 5000 + "}\n"},
        fails("BFCL_v4_simple_python_score.json", "not a JSON object", "Exceeds the limit"),
        id="bfcl: an integer of 5000 digits fails",
    ),
    pytest.param(
        {BF: lambda: within_size('{"accuracy": 0.5, "pad": "', "x", '"}\n', 2 * MIB)},
        fails("BFCL_v4_simple_python_score.json", "its first line is longer than 1048576 bytes"),
        id="bfcl: a first line of 2 MiB fails at the size limit",
    ),
    pytest.param(
        {BF: lambda: BFCL_LINE + ('{"id": "x", "error": ["' + "e" * 1000 + '"]}\n') * 10_000},
        ok(
            ("simple_python/accuracy", 0.49),
            ("simple_python/correct_count", 196.0),
            ("simple_python/total_count", 400.0),
        ),
        id="bfcl: a 10 MB score file is read by its first line only",
    ),
    pytest.param(
        {BF: Earlier(BFCL.read_bytes())},
        fails("BFCL_v4_simple_python_score.json", "is older than this run's pod"),
        id="bfcl: a score file older than the pod start fails",
    ),
    pytest.param(
        {BF: Fifo()},
        fails("eval-output", "no BFCL_v*_<category>_score.json below"),
        id="bfcl: a score file that is a FIFO is no file and fails without blocking",
    ),
]


@dataclass(frozen=True)
class Outcome:
    returncode: int
    message: bytes
    stdout: str
    stderr: str
    max_rss: int  # bytes


@cache
def collector(format_: str | None, path: str = "") -> dict[str, Any]:
    """The collector container of the Job the operator builds for a task of `format_`
    (None: no `results`, metrics.json) and `path`."""
    task: dict[str, Any] = {"name": "t", "image": "registry.example.com/eval:1"}
    if format_ is not None:
        task["results"] = {"format": format_, "path": path}
    parsed = spec.parse_spec(
        {"models": [{"name": "m", "url": "http://m.example/v1/chat/completions"}], "tasks": [task]}
    )
    job = manifests.build_job(
        manifests.Owner("EvalTask", "corpus", "evals", "uid-1"),
        manifests.Owner("EvalRun", "corpus-m-t", "evals", "uid-2"),
        parsed,
        parsed.models[0],
        parsed.tasks[0],
        "eval-operator/runner:test",
    )
    [container] = job["spec"]["template"]["spec"]["containers"]
    return dict(container)


def memory_limit(container: dict[str, Any]) -> int:
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi"), limit
    return int(limit[:-2]) * MIB


# Runs the collector and reports its peak memory. ru_maxrss also counts the memory of the
# process it forked from before its exec: this small process, not pytest's. The alarm
# (kept across exec) ends a collector that hangs.
LAUNCHER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    signal.alarm(int(sys.argv[2]))
    os.execv(sys.argv[3], sys.argv[3:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss * 1024}")
"""


def run_collector(container: dict[str, Any], root: Path, write: Callable[[Path], None]) -> Outcome:
    """`container` run as a process: its mounts are folders of `root`, the probe's start
    mark is made first, then `write` fills the output folder (the task)."""
    mounts = {m["mountPath"]: root / m["name"] for m in container["volumeMounts"]}
    for folder in mounts.values():
        folder.mkdir(parents=True)
    env = {e["name"]: str(mounts.get(e["value"], e["value"])) for e in container["env"]}
    probe.stamp(Path(env["EVAL_RUN_DIR"]))
    write(Path(env["EVAL_OUTPUT_DIR"]))
    termination = root / "termination-log"
    assert container["command"][0] == "python" and "args" not in container
    command = [sys.executable, *container["command"][1:], "--termination-path", str(termination)]
    report = root / "exit"
    with open(root / "stdout", "w") as out, open(root / "stderr", "w") as err:
        subprocess.run(
            [sys.executable, "-I", "-c", LAUNCHER, str(report), str(TIMEOUT_SECONDS), *command],
            env={**IMAGE_ENV, "PATH": os.environ["PATH"], **env},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=root,
            check=True,
        )
    returncode, max_rss = map(int, report.read_text().split())
    return Outcome(
        returncode,
        termination.read_bytes() if termination.exists() else b"",
        (root / "stdout").read_text(),
        (root / "stderr").read_text(),
        max_rss,
    )


def writer(files: dict[str, Content], outside: Path) -> Callable[[Path], None]:
    """What the task does: `files` into the output folder; `outside` (beside it) gets a
    valid metrics.json and lm-eval results file, written during the run like them."""

    def write(out: Path) -> None:
        outside.mkdir()
        shutil.copyfile(LM_EVAL, outside / LM_EVAL.name)
        (outside / METRICS).write_text(doc(("accuracy", 0.5)))
        for name, content in files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Link):
                path.symlink_to(content.target.replace("{outside}", str(outside)))
            elif isinstance(content, Fifo):
                os.mkfifo(path)
            elif isinstance(content, Folder):
                path.mkdir()
            elif isinstance(content, Earlier):
                data = content.content
                path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
                os.utime(path, (1_000_000_000, 1_000_000_000))
            else:
                data = content() if callable(content) else content
                path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    return write


def check(outcome: Outcome, expected: Ok | Fails, limit: int) -> None:
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.max_rss < limit, f"{outcome.max_rss / MIB:.0f} MiB, over the container's limit"
    if isinstance(expected, Ok):
        assert outcome.returncode == 0, (outcome.message, outcome.stderr)
        metrics = results.decode(outcome.message.decode("ascii"))  # what the operator does
        assert list(metrics.items()) == expected.metrics
        assert outcome.stdout.startswith(f"collect: {len(expected.metrics)} metrics, ")
        return
    assert outcome.returncode == 1, (outcome.returncode, outcome.message, outcome.stderr)
    assert 0 < len(outcome.message) <= results.TERMINATION_MESSAGE_LIMIT
    message = outcome.message.decode("utf-8")  # strict: Kubernetes keeps it as a string
    assert expected.file in message, message
    for words in expected.words:
        assert words in message, message
    assert message in outcome.stderr, "the log says it too"


def run_case(tmp_path: Path, container: dict[str, Any], files: dict[str, Content], expected):
    write = writer(files, tmp_path / "outside")
    check(run_collector(container, tmp_path / "pod", write), expected, memory_limit(container))


@pytest.mark.parametrize(("files", "expected"), METRICS_JSON_CASES)
def test_metrics_json(tmp_path, files, expected):
    run_case(tmp_path, collector(None), files, expected)


@pytest.mark.parametrize(
    ("format_", "files", "expected"),
    [
        *(pytest.param("lm-eval", *p.values, id=p.id) for p in LM_EVAL_CASES),
        *(pytest.param("evalscope", *p.values, id=p.id) for p in EVALSCOPE_CASES),
        *(pytest.param("opencompass", *p.values, id=p.id) for p in OPENCOMPASS_CASES),
        *(pytest.param("bfcl", *p.values, id=p.id) for p in BFCL_CASES),
    ],
)
def test_framework_results(tmp_path, format_, files, expected):
    run_case(tmp_path, collector(format_), files, expected)


PATH_CASES = [
    pytest.param(
        "lm-eval",
        "lm_eval/m2",
        {"lm_eval/m2": Link("{outside}")},
        fails("m2", "is a symbolic link to", "outside", "inside the output folder"),
        id="a results path that is a folder linking out of the output folder is refused",
    ),
    pytest.param(
        "lm-eval",
        "lm_eval/results_1.json",
        {"lm_eval/results_1.json": Link("/etc/passwd")},
        fails("results_1.json", "is a symbolic link to /etc/passwd, outside"),
        id="a results path that is a file linking to /etc/passwd is refused",
    ),
    pytest.param(
        "metrics-json",
        "sub",
        {"sub/metrics.json": Link("{outside}/metrics.json")},
        fails("sub/metrics.json", "is a symbolic link to", "outside"),
        id="a metrics.json in a results folder linking out of the output folder is refused",
    ),
    pytest.param(
        "metrics-json",
        "sub",
        {"sub/metrics.json": Link("../metrics.json"), METRICS: doc(("accuracy", 0.5))},
        ok(("accuracy", 0.5)),
        id="a metrics.json in a results folder linking elsewhere in the output folder is read",
    ),
    pytest.param(
        "lm-eval",
        "lm_eval/m1",
        {LM: LM_EVAL.read_bytes()},
        ok(("capitals/exact_match/strict", 0.5), ("capitals_raw/exact_match", 0.5)),
        id="a results path that is a folder is searched",
    ),
]


@pytest.mark.parametrize(("format_", "path", "files", "expected"), PATH_CASES)
def test_results_path(tmp_path, format_, path, files, expected):
    run_case(tmp_path, collector(format_, path), files, expected)
