"""The collector and the metrics.json contract: every malformed input gets a clear error."""

from __future__ import annotations

import json
import math

import pytest

from eval_runner import collect, results


def write(tmp_path, text: str | bytes):
    path = tmp_path / "metrics.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return tmp_path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("", "metrics.json is empty", id="an empty file"),
        pytest.param("  \n", "metrics.json is empty", id="a blank file"),
        pytest.param("{not json", "metrics.json is not valid JSON", id="text that is not JSON"),
        pytest.param('[{"name": "a", "value": 1}]', "must be an object", id="a list at the top"),
        pytest.param('{"results": []}', "must be an object", id="the wrong top-level key"),
        pytest.param(
            '{"metrics": [], "extra": 1}', "must be an object", id="an extra top-level key"
        ),
        pytest.param(
            '{"metrics": {"a": 1}}', '"metrics" must be a list', id="metrics as an object"
        ),
        pytest.param(
            '{"metrics": [1]}',
            'metrics[0] must be an object with exactly "name" and "value"',
            id="an item that is a number",
        ),
        pytest.param(
            '{"metrics": [{"name": "a"}]}',
            "metrics[0] must be an object with exactly",
            id="an item without a value",
        ),
        pytest.param(
            '{"metrics": [{"name": "a", "value": 1, "unit": "%"}]}',
            "exactly",
            id="an item with an extra key",
        ),
        pytest.param(
            '{"metrics": [{"name": "", "value": 1}]}',
            "metrics[0].name must be a non-empty string",
            id="an empty name",
        ),
        pytest.param(
            '{"metrics": [{"name": 7, "value": 1}]}',
            "metrics[0].name must be a non-empty string",
            id="a name that is a number",
        ),
        pytest.param(
            '{"metrics": [{"name": "a", "value": "0.8"}]}',
            "metrics[0].value ('a') is a str (\"0.8\"); each value must be a finite number",
            id="a value that is a string",
        ),
        pytest.param(
            '{"metrics": [{"name": "a", "value": null}]}', "is a NoneType", id="a null value"
        ),
        pytest.param(
            '{"metrics": [{"name": "a", "value": true}]}', "is a bool", id="a boolean value"
        ),
        pytest.param(
            '{"metrics": [{"name": "a", "value": NaN}]}',
            "is nan; each value must be a finite",
            id="NaN",
        ),
        pytest.param('{"metrics": [{"name": "a", "value": Infinity}]}', "is inf", id="Infinity"),
        pytest.param('{"metrics": [{"name": "a", "value": -Infinity}]}', "is -inf", id="-Infinity"),
        pytest.param(
            '{"metrics": [{"name": "a", "value": 1e999}]}',
            "is inf",
            id="a number too large for a float",
        ),
        pytest.param(
            '{"metrics": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]}',
            "metrics[1].name 'a' is a duplicate",
            id="duplicate names",
        ),
    ],
)
def test_malformed_metrics_are_rejected_with_the_reason(tmp_path, content, expected):
    with pytest.raises(results.MetricsError) as e:
        results.read_file(write(tmp_path, content))
    assert expected in str(e.value)


def test_a_missing_file_names_the_path(tmp_path):
    with pytest.raises(results.MetricsError, match=r"metrics.json not found.*EVAL_OUTPUT_DIR"):
        results.read_file(tmp_path)


def test_bytes_that_are_not_utf8(tmp_path):
    with pytest.raises(results.MetricsError, match="not UTF-8"):
        results.read_file(write(tmp_path, b'{"metrics": [{"name": "\xff", "value": 1}]}'))


def test_valid_metrics_keep_order_and_unicode_names_exactly(tmp_path):
    doc = {
        "metrics": [
            {"name": "准确率", "value": 0.85},
            {"name": "f1_score", "value": 1},
            {"name": "émoji 🎯", "value": -2.5e-3},
        ]
    }
    metrics = results.read_file(write(tmp_path, json.dumps(doc, ensure_ascii=False)))
    assert list(metrics.items()) == [("准确率", 0.85), ("f1_score", 1.0), ("émoji 🎯", -0.0025)]
    assert results.decode(results.encode(metrics)) == metrics


def test_too_many_metrics_fail_with_size_and_limit():
    metrics = {f"metric_{i:05d}_{math.sin(i):.12f}": math.cos(i) for i in range(2000)}
    with pytest.raises(results.MetricsError) as e:
        results.encode(metrics)
    message = str(e.value)
    assert "holds 2000 metrics" in message
    assert "over the 4096-byte limit" in message
    size = int(message.split("metrics, ")[1].split(" bytes")[0])
    assert size > results.TERMINATION_MESSAGE_LIMIT


def test_the_encoded_result_fits_and_compresses():
    metrics = {f"subset_{i:03d}_accuracy": i / 1000 for i in range(150)}
    message = results.encode(metrics)
    assert len(message) <= results.TERMINATION_MESSAGE_LIMIT
    assert len(message) < len(json.dumps(metrics))
    assert results.decode(message) == metrics


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("", id="empty"),
        pytest.param("accuracy=1", id="plain text"),
        pytest.param("evalm1:%%%", id="not base64"),
        pytest.param("evalm1:aGVsbG8=", id="not zlib"),
    ],
)
def test_a_corrupt_result_is_rejected(message):
    with pytest.raises(results.MetricsError):
        results.decode(message)


def test_collect_writes_the_result_to_the_termination_message(tmp_path, capsys):
    out = write(tmp_path, '{"metrics": [{"name": "accuracy", "value": 0.85}]}')
    term = tmp_path / "term" / "termination-log"
    assert collect.main(["--output-dir", str(out), "--termination-path", str(term)]) == 0
    assert results.decode(term.read_text()) == {"accuracy": 0.85}
    assert "accuracy=0.85" in capsys.readouterr().out


def test_collect_fails_with_the_reason_as_termination_message(tmp_path, monkeypatch):
    term = tmp_path / "termination-log"
    monkeypatch.setenv("EVAL_OUTPUT_DIR", str(tmp_path))
    assert collect.main(["--termination-path", str(term)]) == 1
    assert "metrics.json not found" in term.read_text()
