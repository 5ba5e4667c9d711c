"""Secret values out of everything the operator writes: status, records, events, logs.

The values are those of every Secret a run may read (auth, env secretKeyRef, mounted
Secret volumes, literal auth values), as a pass reads them, and every value an EvalTask's
Secrets had earlier in this process (`Memory`): a run that printed its token and failed is
often recorded after the token was rotated. What a process restart forgets of rotated
values is the one gap left (README, Reliability).

Values of 4 characters or more are replaced wherever they appear, and so is a piece of
one (4 characters or more) cut off at either end of a log tail, which starts mid-line.
Shorter values are replaced where they stand alone: after a space, '=', ':' or '"' (or
the start), before a space, ',', ';' or '"' (or the end), never inside a word.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final

REDACTED: Final = "[redacted]"
MIN_LENGTH: Final = 4  # shorter values: whole tokens only
MAX_REMEMBERED: Final = 64  # values kept per EvalTask, newest last


def forms(secrets: Iterable[str]) -> set[str]:
    """Each value, trimmed, and without a leading 'Bearer ' (a header's token alone)."""
    out = set()
    for s in secrets:
        for form in (s, s.strip()):
            if form:
                out.add(form)
            if form.lower().startswith("bearer ") and form[7:].strip():
                out.add(form[7:].strip())
    return out


def redact(value: Any, secrets: Iterable[str], cut: bool = False) -> Any:
    """`value` (a string, or a status of dicts and lists) with every secret replaced;
    `cut`: the text was cut before it got here (a log's end), so a piece of a secret at
    either end of it goes too (only there: it costs a check per secret and length)."""
    needles = forms(secrets)
    if not needles:
        return value
    long = sorted((n for n in needles if len(n) >= MIN_LENGTH), key=len, reverse=True)
    short = [
        re.compile(rf"(?<![^\s=:\"]){re.escape(n)}(?![^\s,;\"])")
        for n in sorted((n for n in needles if len(n) < MIN_LENGTH), key=len, reverse=True)
    ]

    def text(s: str) -> str:
        for needle in long:  # longest first: no partial leftovers
            s = s.replace(needle, REDACTED)
        for pattern in short:
            s = pattern.sub(REDACTED, s)
        return _cut_ends(s, long) if cut else s

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return text(v)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _cut_ends(s: str, needles: list[str]) -> str:
    """A secret's end at the start of `s`, or its start at the end of `s`: what is left
    of it when the text was cut (a log's last bytes) before it got here."""
    for needle in needles:
        for k in range(len(needle) - 1, MIN_LENGTH - 1, -1):
            if s.startswith(needle[-k:]):
                s = REDACTED + s[k:]
                break
        for k in range(len(needle) - 1, MIN_LENGTH - 1, -1):
            if s.endswith(needle[:k]):
                s = s[:-k] + REDACTED
                break
    return s


class Memory:
    """The secret values each EvalTask's passes have read, by its uid, in this process:
    a value rotated away stays redacted from what is written later."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, OrderedDict[str, None]] = {}

    def remember(self, uid: str, values: Iterable[str]) -> list[str]:
        """Note `values`; all values known for `uid`: these, whatever their number, and
        the newest MAX_REMEMBERED of those seen before."""
        current = [v for v in values if v]
        with self._lock:
            seen = self._seen.setdefault(uid, OrderedDict())
            for value in current:
                seen[value] = None
                seen.move_to_end(value)
            while len(seen) > MAX_REMEMBERED:
                seen.popitem(last=False)
            return list(dict.fromkeys([*seen, *current]))

    def forget(self, uid: str) -> None:
        with self._lock:
            self._seen.pop(uid, None)


MEMORY: Final = Memory()
