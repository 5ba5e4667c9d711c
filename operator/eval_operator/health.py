"""Whether the operator can still see the cluster: what /healthz reports.

kopf runs one watcher task per resource; when one fails for good (a watch refused again and
again, say), kopf logs it and, depending on where it failed, either exits or runs on blind
to that resource. Running on blind is the dangerous case: nothing would restart the pod.
So the failures kopf logs are noted here, and /healthz fails once one has happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

_FAILURES: Final = ("Watcher for ", "Multitasker ")
log = logging.getLogger(__name__)
# A failed request this recent keeps a streak of failures going (kopf retries a watch at
# least every 10 s while it fails); a streak this long makes /healthz fail.
STREAK_WINDOW_SECONDS: Final = 30.0
STREAK_GRACE_SECONDS: Final = 10.0


class _Health:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: list[str] = []

    def note(self, what: str) -> None:
        with self._lock:
            if what not in self._failed:
                self._failed.append(what)

    def problems(self) -> list[str]:
        with self._lock:
            return list(self._failed)

    def reset(self) -> None:
        with self._lock:
            self._failed.clear()


HEALTH: Final = _Health()


class _Requests:
    """Streaks of failed requests to the API server, by source: "kopf" (its watches, seen
    in its log) and "operator" (a pass's calls). While one has lasted STREAK_GRACE_SECONDS,
    /healthz says so: an API server that is gone, or that refuses a watch (RBAC). Each
    streak is logged once, when it starts. Only a pass's answered call ends its own
    streak; kopf's end when its failures stop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._streaks: dict[str, tuple[float, float, str]] = {}  # source -> first, last, what

    def failed(self, source: str, what: str) -> None:
        now = self._clock()
        with self._lock:
            first, last, _ = self._streaks.get(source, (now, now, ""))
            if now - last > STREAK_WINDOW_SECONDS or source not in self._streaks:
                first = now
                log.warning("the API server is unreachable or refuses %s: %s", source, what)
            self._streaks[source] = (first, now, what)

    def answered(self, source: str) -> None:
        with self._lock:
            self._streaks.pop(source, None)

    def problems(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return [
                f"{source}'s requests to the API server have failed for {now - first:.0f} s: "
                + what[:300]
                for source, (first, last, what) in sorted(self._streaks.items())
                if now - last <= STREAK_WINDOW_SECONDS and now - first >= STREAK_GRACE_SECONDS
            ]


REQUESTS: Final = _Requests()


class WatcherFailures(logging.Handler):
    """A log handler on kopf's loggers that notes failed watchers (and kopf's multitasker)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " has failed" in message and message.startswith(_FAILURES):
            HEALTH.note(message.split(" has failed", 1)[0])
        elif message.startswith("Request attempt") and " failed" in message:
            REQUESTS.failed("kopf", message.split(": ", 1)[-1])


def install() -> None:
    """Start noting kopf's watcher failures (once)."""
    kopf_logger = logging.getLogger("kopf")
    if not any(isinstance(h, WatcherFailures) for h in kopf_logger.handlers):
        kopf_logger.addHandler(WatcherFailures(level=logging.ERROR))
