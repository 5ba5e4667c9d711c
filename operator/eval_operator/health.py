"""Whether the operator can still see the cluster: what /healthz reports.

kopf runs one watcher task per resource; when one fails for good (a watch refused again and
again, say), kopf logs it and, depending on where it failed, either exits or runs on blind
to that resource. Running on blind is the dangerous case: nothing would restart the pod.
So the failures kopf logs are noted here, and /healthz fails once one has happened.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

_FAILURES: Final = ("Watcher for ", "Multitasker ")


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


class WatcherFailures(logging.Handler):
    """A log handler on kopf's loggers that notes failed watchers (and kopf's multitasker)."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " has failed" in message and message.startswith(_FAILURES):
            HEALTH.note(message.split(" has failed", 1)[0])


def install() -> None:
    """Start noting kopf's watcher failures (once)."""
    kopf_logger = logging.getLogger("kopf")
    if not any(isinstance(h, WatcherFailures) for h in kopf_logger.handlers):
        kopf_logger.addHandler(WatcherFailures(level=logging.ERROR))
