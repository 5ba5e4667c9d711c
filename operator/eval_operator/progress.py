"""In-job progress: how far a running task is, read from the tail of its container's log.

Two forms are understood (API.md), the last one in the log wins:
- `EVAL_PROGRESS done=<n> total=<n>`, which the runner prints;
- tqdm-style bars, as most evaluation frameworks print them:
  `Requesting API:  45%|████▌     | 9/20 [00:03<00:03,  3.0it/s]`. tqdm redraws a bar
  with carriage returns, so one log line can hold hundreds of states: the last counts.

Only the two numbers are taken from the log, nothing else (it may hold anything), and
parsing never raises on what it holds: a count of more than 18 digits is no count (it
would not fit the CRD's int64, and int() refuses strings of over 4300 digits).
`Poller` bounds how often a running run's log is read.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# How much of a log's end is read: its last lines, and at most this many bytes of them.
TAIL_LINES: Final = 20
LIMIT_BYTES: Final = 64 * 1024
_DIGITS: Final = 18
_COUNT: Final = rf"(\d{{1,{_DIGITS}}})"
# Each count is delimited on both sides (a longer run of digits does not match at all).
_EVAL_PROGRESS: Final = re.compile(rf"EVAL_PROGRESS\s+done={_COUNT}\s+total={_COUNT}(?!\d)")
# `<done>/<total> [<elapsed><...` or `<done>/<total> [<elapsed>, ...]`: tqdm's counter
# is followed by its time bracket, which tells it from a fraction in ordinary text.
_TQDM: Final = re.compile(rf"(?<![\d/]){_COUNT}/{_COUNT} \[\d[\d:]*[<,\]]")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


def parse(log: str) -> Progress | None:
    """The last progress the log tells, or None when it tells none."""
    best: tuple[int, Progress] | None = None
    for pattern in (_EVAL_PROGRESS, _TQDM):
        for match in pattern.finditer(log):
            done, total = int(match[1]), int(match[2])
            if total <= 0 or done > total:
                continue  # not a count of samples
            if best is None or match.start() > best[0]:
                best = (match.start(), Progress(done, total))
    return best[1] if best else None


class Poller:
    """When each running run's log may next be read: at most once per `interval`.

    Shared by every pass (they run on several threads), so the bound holds per run
    whatever triggers passes.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        """Whether `key`'s log may be read now; if so, the next read waits an interval."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            self._last[key] = now
            return True

    def wait(self, key: str) -> float:
        """Seconds until `key`'s log may be read again (0: now)."""
        with self._lock:
            last = self._last.get(key)
        if last is None:
            return 0.0
        return max(0.0, self.interval - (self._clock() - last))

    def forget(self, keep: set[str], prefix: str) -> None:
        """Drop the runs under `prefix` that are no longer running."""
        with self._lock:
            for key in [k for k in self._last if k.startswith(prefix) and k not in keep]:
                del self._last[key]
