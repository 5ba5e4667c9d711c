"""How far the run is: progress.json (rewritten atomically) and lines on stdout.

The line `EVAL_PROGRESS done=<n> total=<n>` is the one the operator reads from the task's
log (its EvalRun's status.progress); the other is for people.

Both at most every `interval` seconds, whatever the sample rate, so a fast run does not
spend its time on fsyncs and a slow one still shows signs of life in `kubectl logs`.
The ETA is the remaining count over the rate of the samples that needed work in this
process: samples resumed from an earlier run, or scored from predictions in the dataset,
are done at once and would make the rate look far better than it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from eval_runner import store

FILE_NAME = "progress.json"


class Progress:
    def __init__(
        self,
        output_dir: Path,
        total: int,
        interval: float,
        out: TextIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = output_dir / FILE_NAME
        self.total = total
        self.done = 0
        self.worked = 0  # samples that needed a request in this process
        self.errors = 0
        self.interval = interval
        self.out = out
        self.clock = clock
        self.started = clock()
        self._last = float("-inf")

    def advance(self, error: bool, worked: bool = True) -> None:
        self.done += 1
        self.worked += worked
        self.errors += error
        now = self.clock()
        if now - self._last >= self.interval:
            self.report(now)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        elapsed = now - self.started
        rate = self.worked / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done
        eta = 0.0 if remaining == 0 else (remaining / rate if rate > 0 else None)
        return {
            "done": self.done,
            "total": self.total,
            "errors": self.errors,
            "elapsed_seconds": round(elapsed, 3),
            "samples_per_second": round(rate, 3),
            "eta_seconds": None if eta is None else round(eta, 1),
        }

    def report(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        self._last = now
        doc = self.snapshot(now)
        store.write_json(self.path, doc)
        eta = "?" if doc["eta_seconds"] is None else f"{doc['eta_seconds']:.0f}s"
        print(
            f"progress: {doc['done']}/{doc['total']} done, {doc['errors']} errors, "
            f"{doc['samples_per_second']:.1f}/s, eta {eta}\n"
            f"EVAL_PROGRESS done={doc['done']} total={doc['total']}",
            file=self.out,
            flush=True,
        )
