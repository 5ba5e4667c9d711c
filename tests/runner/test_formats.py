"""The collector reads what evaluation frameworks write (formats.py), from real outputs.

Fixtures are files the real tools wrote on this machine (hack/fixtures/<tool>/record.sh
remakes them), named by the tool's version.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from eval_runner import collect, formats, results

FIXTURES = Path(__file__).parent / "fixtures"
[LM_EVAL] = (FIXTURES / "lm-eval-0.4.13").glob("results_*.json")
BFCL = FIXTURES / "bfcl-2026.3.23" / "score"
EVALSCOPE = FIXTURES / "evalscope-1.14.1"
OPENCOMPASS = FIXTURES / "opencompass-0.5.4"


def lm_eval_output(tmp_path: Path) -> Path:
    """An output folder as `lm_eval --output_path $EVAL_OUTPUT_DIR` leaves it."""
    out = tmp_path / "out"
    (out / "m1").mkdir(parents=True)
    shutil.copy(LM_EVAL, out / "m1" / LM_EVAL.name)
    return out


def test_lm_eval_scores_are_flattened_by_task_metric_and_filter(tmp_path):
    metrics = formats.read(lm_eval_output(tmp_path), None, "lm-eval", "")
    assert metrics == {"capitals/exact_match/strict": 0.5, "capitals_raw/exact_match": 0.5}


def test_lm_eval_copies_the_auth_header_and_the_collector_drops_it(tmp_path):
    assert "Bearer fixture-token" in LM_EVAL.read_text(), "the real file holds it"
    out = lm_eval_output(tmp_path)
    termination = tmp_path / "termination-log"
    assert collect.collect(out, termination, None, "lm-eval", "m1") == 0
    message = termination.read_text()
    assert results.decode(message) == {
        "capitals/exact_match/strict": 0.5,
        "capitals_raw/exact_match": 0.5,
    }
    assert "fixture-token" not in message and "model_args" not in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, r"no results_\*\.json below"),
        ("{not json", "is not valid JSON"),
        ('{"metrics": [{"name": "a", "value": 1}]}', 'has no "results" object'),
        ('{"results": {"t": {"alias": "t", "acc_stderr,none": "N/A"}}}', "holds no numeric score"),
    ],
    ids=["no results file", "not JSON", "another format's file", "no score in it"],
)
def test_a_missing_or_wrong_lm_eval_file_says_what_is_wrong(tmp_path, content, words):
    out = tmp_path / "out"
    out.mkdir()
    if content is not None:
        (out / "results_2026-01-01T00-00-00.json").write_text(content)
    with pytest.raises(results.MetricsError, match=words):
        formats.read(out, None, "lm-eval", "")


def test_the_collector_fails_the_run_with_the_reason_as_its_message(tmp_path):
    termination = tmp_path / "termination-log"
    (tmp_path / "out").mkdir()
    assert collect.collect(tmp_path / "out", termination, None, "lm-eval", "") == 1
    assert "no results_*.json below" in termination.read_text()


@pytest.mark.parametrize(
    ("format_", "path", "words"),
    [
        (
            "helm",
            "",
            "EVAL_RESULTS_FORMAT='helm' is none of metrics-json, lm-eval, evalscope, "
            "opencompass, bfcl",
        ),
        ("lm-eval", "../elsewhere", "must be a path below EVAL_OUTPUT_DIR"),
        ("lm-eval", "/etc", "must be a path below EVAL_OUTPUT_DIR"),
    ],
)
def test_a_bad_format_or_path_is_named(tmp_path, format_, path, words):
    with pytest.raises(results.MetricsError, match=words):
        formats.read(lm_eval_output(tmp_path), None, format_, path)


def test_metrics_json_stays_the_default(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"metrics": [{"name": "accuracy", "value": 0.75}]}')
    assert formats.read(out, None, "metrics-json", "") == {"accuracy": 0.75}


def bfcl_output(tmp_path: Path) -> Path:
    """An output folder holding BFCL's score/ tree (the task copies it there, or runs
    BFCL with BFCL_PROJECT_ROOT=$EVAL_OUTPUT_DIR)."""
    out = tmp_path / "out"
    shutil.copytree(BFCL, out / "score")
    return out


def test_bfcl_scores_come_from_the_first_line_of_each_category(tmp_path):
    metrics = formats.read(bfcl_output(tmp_path), None, "bfcl", "score")
    assert metrics == {
        "simple_python/accuracy": 0.49,
        "simple_python/correct_count": 196,
        "simple_python/total_count": 400,
    }


def test_bfcl_categories_each_give_their_metrics(tmp_path):
    out = bfcl_output(tmp_path)
    other = out / "score" / "m1" / "live" / "BFCL_v4_live_simple_score.json"
    other.parent.mkdir(parents=True)
    other.write_text('{"accuracy": 0.25, "correct_count": 1, "total_count": 4}\n')
    metrics = formats.read(out, None, "bfcl", "")
    assert metrics["live_simple/accuracy"] == 0.25
    assert metrics["simple_python/accuracy"] == 0.49


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, r"no BFCL_v\*_<category>_score\.json below"),
        ("not json\n", "its first line is not a JSON object"),
        ('{"accuracy": "high"}\n', "must hold numbers accuracy, correct_count, total_count"),
    ],
    ids=["no score file", "not JSON", "no numbers"],
)
def test_a_missing_or_wrong_bfcl_file_says_what_is_wrong(tmp_path, content, words):
    out = tmp_path / "out"
    (out / "score").mkdir(parents=True)
    if content is not None:
        (out / "score" / "BFCL_v4_simple_python_score.json").write_text(content)
    with pytest.raises(results.MetricsError, match=words):
        formats.read(out, None, "bfcl", "")


def test_evalscope_scores_are_named_by_dataset_metric_and_dimensions(tmp_path):
    metrics = formats.read(evalscope_output(tmp_path), None, "evalscope", "")
    assert metrics["general_qa/rouge/ngram=1/statistic=recall"] == 0.5
    assert metrics["general_qa/rouge/ngram=2/statistic=f1"] == 0.0
    assert metrics["general_qa/rouge/statistic=f1/variant=l"] == 0.5
    assert len(metrics) == 9


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no reports/<model>/<dataset>.json below"),
        ('{"results": {}}', 'has no "metrics" list'),
        ('{"metrics": [{"identity": {"name": "rouge"}, "score": "x"}]}', "numeric score"),
    ],
    ids=["no report", "another format's file", "a score that is no number"],
)
def test_a_missing_or_wrong_evalscope_report_says_what_is_wrong(tmp_path, content, words):
    out = tmp_path / "out"
    (out / "reports" / "m1").mkdir(parents=True)
    if content is not None:
        (out / "reports" / "m1" / "general_qa.json").write_text(content)
    with pytest.raises(results.MetricsError, match=words):
        formats.read(out, None, "evalscope", "")


def evalscope_output(tmp_path: Path) -> Path:
    """`evalscope eval --work-dir $EVAL_OUTPUT_DIR`: <stamp>/reports/<model>/<dataset>.json."""
    out = tmp_path / "out"
    shutil.copytree(EVALSCOPE, out)
    return out


def opencompass_output(tmp_path: Path) -> Path:
    """OpenCompass with `work_dir` $EVAL_OUTPUT_DIR: <stamp>/summary/summary_<stamp>.csv."""
    out = tmp_path / "out"
    shutil.copytree(OPENCOMPASS, out)
    return out


def opencompass_summary(out: Path) -> Path:
    [summary] = out.glob("*/summary/summary_*.csv")
    return summary


def test_opencompass_scores_are_named_by_dataset_and_metric(tmp_path):
    metrics = formats.read(opencompass_output(tmp_path), None, "opencompass", "")
    assert metrics == {"capitals/accuracy": 50.0, "colors/accuracy": 25.0}, "as it prints them"


def test_opencompass_with_several_models_names_each(tmp_path):
    out = opencompass_output(tmp_path)
    summary = opencompass_summary(out)
    lines = summary.read_text().splitlines()
    two = [lines[0] + ",m2"] + [line + ",75.00" for line in lines[1:]]
    summary.write_text("\n".join(two) + "\n")
    metrics = formats.read(out, None, "opencompass", "")
    assert metrics["capitals/accuracy/m1"] == 50.0
    assert metrics["colors/accuracy/m2"] == 75.0


def test_opencompass_reads_the_newest_summary_and_skips_group_headings(tmp_path):
    out = opencompass_output(tmp_path)
    older = opencompass_summary(out)
    os.utime(older, (1, 1))
    newer = out / "20261202_130000" / "summary" / "summary_20261202_130000.csv"
    newer.parent.mkdir(parents=True)
    newer.write_text(
        "dataset,version,metric,mode,m1\n--------- Exam ---------,-,-,-,-\n"
        "capitals,359d58,accuracy,gen,75.00\n"
    )
    assert formats.read(out, None, "opencompass", "") == {"capitals/accuracy": 75.0}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, r"no summary/summary_\*\.csv below"),
        # What OpenCompass writes when a dataset's inference or evaluation failed.
        ("dataset,version,metric,mode,m1\ncapitals,-,-,-,-\n", "capitals has no score for m1"),
        ("dataset,metric,m1\ncapitals,accuracy,50\n", "not an OpenCompass summary"),
        ("dataset,version,metric,mode,m1\ncapitals,1,accuracy\n", "line 2 has 3 columns"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
    ids=["no summary", "a failed dataset", "another header", "a short row", "not text"],
)
def test_a_missing_or_wrong_opencompass_summary_says_what_is_wrong(tmp_path, content, words):
    out = tmp_path / "out"
    summary = out / "20261202_125818" / "summary" / "summary_20261202_125818.csv"
    summary.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        summary.write_bytes(content)
    elif content is not None:
        summary.write_text(content)
    with pytest.raises(results.MetricsError, match=words):
        formats.read(out, None, "opencompass", "")


@pytest.mark.parametrize(
    ("output", "format_", "words"),
    [
        (lm_eval_output, "lm-eval", "older than this run's pod"),
        (bfcl_output, "bfcl", "older than this run's pod"),
        (evalscope_output, "evalscope", "written during this run"),
        (opencompass_output, "opencompass", "older than this run's pod"),
    ],
    ids=["lm-eval", "bfcl", "evalscope", "opencompass"],
)
def test_results_left_by_an_earlier_run_are_not_this_runs(tmp_path, output, format_, words):
    out = output(tmp_path)
    for old in [*out.rglob("*.json"), *out.rglob("*.csv")]:
        os.utime(old, (1, 1))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / results.STARTED_MARKER).write_text("pod\n")
    with pytest.raises(results.MetricsError, match=words):
        formats.read(out, run_dir, format_, "")


def test_every_formats_names_keep_the_bounds_of_metrics_json(tmp_path):
    out = tmp_path / "out"
    (out / "reports" / "m1").mkdir(parents=True)
    report = {"dataset_name": "d" * 120, "metrics": [{"identity": {"name": "rouge"}, "score": 1}]}
    (out / "reports" / "m1" / "long.json").write_text(json.dumps(report))
    with pytest.raises(results.MetricsError, match="characters long; at most 100 allowed"):
        formats.read(out, None, "evalscope", "")
