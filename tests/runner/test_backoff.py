"""Tables for the backoff delay and the reading of Retry-After."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from eval_runner import backoff

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "ceiling"),
    [(0, 1.0, 60.0, 1.0), (1, 1.0, 60.0, 2.0), (3, 1.0, 60.0, 8.0), (10, 1.0, 60.0, 60.0)],
    ids=[
        "the first retry waits up to the base",
        "the second up to twice the base",
        "the fourth up to eight times",
        "never more than the cap",
    ],
)
def test_full_jitter_draws_between_zero_and_the_capped_exponential(attempt, base, cap, ceiling):
    rng = random.Random(1)
    delays = [backoff.full_jitter(attempt, base, cap, rng) for _ in range(2000)]
    assert min(delays) >= 0 and max(delays) <= ceiling
    assert max(delays) > 0.9 * ceiling, "the draws cover the whole range"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("-4", 0.0),
        ("86400", backoff.RETRY_AFTER_MAX),
        (formatdate(NOW + 7, usegmt=True), 7.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),
        ("soon", None),
        ("nan", None),
    ],
    ids=[
        "no header",
        "whole seconds",
        "fractional seconds with spaces",
        "a negative value means now",
        "an absurd value is capped",
        "an HTTP date in the future",
        "an HTTP date in the past means now",
        "garbage is ignored",
        "not a number is ignored",
    ],
)
def test_retry_after(header, expected):
    assert backoff.retry_after(header, NOW) == expected
