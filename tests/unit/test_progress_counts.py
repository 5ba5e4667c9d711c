"""progress.parse never raises on what a log holds: counts too long to be counts are none."""

from __future__ import annotations

import pytest

from eval_operator import progress

HUGE = "9" * 5000  # int() refuses strings of over 4300 digits: ValueError


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(
            f"EVAL_PROGRESS done={HUGE} total=10\n", None, id="a 5000-digit done is no progress"
        ),
        pytest.param(
            f"EVAL_PROGRESS done=1 total={HUGE}\n", None, id="a 5000-digit total is no progress"
        ),
        pytest.param(
            f"{HUGE}/{HUGE} [00:01<00:02, 3.0it/s]\n",
            None,
            id="a 5000-digit tqdm counter is no progress",
        ),
        pytest.param(
            f"x {HUGE}1/20 [00:01<00:02]\n",
            None,
            id="a long run of digits is not read from its end",
        ),
        pytest.param(
            f"EVAL_PROGRESS done={HUGE} total=10\nEVAL_PROGRESS done=3 total=10\n",
            (3, 10),
            id="an earlier huge line leaves the later count",
        ),
        pytest.param(
            f"EVAL_PROGRESS done=3 total=10\nEVAL_PROGRESS done={HUGE} total=10\n",
            (3, 10),
            id="a later huge line leaves the earlier count",
        ),
        pytest.param(
            f"EVAL_PROGRESS done={'9' * 18} total={'9' * 18}\n",
            (int("9" * 18), int("9" * 18)),
            id="eighteen digits are a count",
        ),
        pytest.param(
            f"EVAL_PROGRESS done=1 total={'1' * 19}\n",
            None,
            id="nineteen digits are none (beyond int64 at worst)",
        ),
        pytest.param(
            f"{'1' * 19}/{'2' * 19} [00:01<00:02]\n",
            None,
            id="nineteen-digit tqdm counters are none",
        ),
    ],
)
def test_parse_bounds_its_counts(log, expected):
    found = progress.parse(log)
    assert (None if found is None else (found.done, found.total)) == expected
