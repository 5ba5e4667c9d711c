"""decode() bounds what it reads: a forged termination message injects nothing the
collector would not have written."""

from __future__ import annotations

import base64
import json
import math
import zlib

import pytest

from eval_runner import results


def forge(raw: bytes | str) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return results.PREFIX + base64.b64encode(zlib.compress(data, 9)).decode()


@pytest.mark.parametrize(
    ("message", "why"),
    [
        pytest.param(
            forge(json.dumps({f"m{i}": 1.0 for i in range(results.MAX_METRICS + 1)})),
            "at most 400",
            id="more metrics than a run records are refused",
        ),
        pytest.param(
            forge(json.dumps({"x" * (results.MAX_NAME_LENGTH + 1): 1.0})),
            "at most 100",
            id="a metric name longer than the collector allows is refused",
        ),
        pytest.param(forge('{"": 1.0}'), "empty", id="an empty metric name is refused"),
        pytest.param(forge('{"a": 1.0, "a": 2.0}'), "twice", id="a metric named twice is refused"),
        pytest.param(forge('{"a": NaN}'), "finite", id="a NaN value is refused"),
        pytest.param(forge('{"a": true}'), "finite", id="a boolean value is refused"),
        pytest.param(
            forge('{"a": ' + "1" * 5000 + "}"),
            "corrupt",
            id="an integer too long to convert is refused, not raised",
        ),
        pytest.param(
            forge('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"),
            "corrupt",
            id="deep nesting is refused, not a recursion error",
        ),
        pytest.param(
            forge('{"a": 1.0' + " " * 3_000_000 + "}"),
            "larger than",
            id="a zlib bomb is refused without inflating it",
        ),
        pytest.param(
            forge(json.dumps({f"m{i:03d}": math.sin(i) for i in range(300)})),
            "bytes",
            id="a message longer than a termination message is refused",
        ),
        pytest.param(
            results.PREFIX + base64.b64encode(zlib.compress(b'{"a": 1.0}')[:-4]).decode(),
            "corrupt",
            id="a truncated stream is refused",
        ),
    ],
)
def test_a_forged_result_is_refused(message, why):
    with pytest.raises(results.MetricsError, match=why):
        results.decode(message)


def test_the_largest_result_the_collector_writes_is_decoded():
    metrics = {f"m{i:03d}": i / 8 for i in range(results.MAX_METRICS)}
    assert results.decode(results.encode(metrics)) == metrics
