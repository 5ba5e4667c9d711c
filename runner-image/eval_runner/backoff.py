"""How long to wait before the next attempt: full-jitter backoff and Retry-After.

Full jitter (a uniform draw between 0 and the capped exponential) spreads the retries of
many concurrent samples over time, so that an overloaded service sees its load thin out
instead of returning in synchronised waves. When the service says when to come back
(Retry-After, in seconds or as an HTTP date), that wins: it knows its own state.
"""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from typing import Final

# A Retry-After beyond this is more likely a misconfigured proxy than a plan.
RETRY_AFTER_MAX: Final = 600.0


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """The delay after failed attempt number `attempt` (0 for the first)."""
    return rng.uniform(0.0, min(cap, base * 2.0**attempt))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header; None when absent or unreadable.

    `now` is the Unix time, injected so tests can pin it.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)
