"""Output files that survive a kill at any moment.

Two kinds of file, two techniques:
- Documents (metrics.json, report.json, progress.json, the final journals) are written
  whole to a temporary file in the same folder, flushed, fsynced, then renamed over the old
  one with os.replace, and the folder is fsynced: a reader sees the old file or the new one,
  never half of one.
- Journals (predictions.jsonl, reviews.jsonl) only grow, one JSON object per line, each
  line flushed and fsynced. A kill can tear only the last line; `read_journal` ignores it
  and `Journal` cuts it off before appending, so the next line starts clean.

The journal's writes run on a thread of their own, so a slow disk never stalls the event
loop's requests. Lines that arrive within GROUP_COMMIT_SECONDS of each other are written
together and share one fsync (group commit): on a disk where fsync takes a millisecond,
per-line fsyncs in the loop would cap a run at about a thousand samples a second, and
waking the thread for every line costs the event loop time (the GIL changes hands) that
benchmarks/runner_throughput.py measures. A kill loses at most the lines of that window,
and their samples are simply asked again.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from eval_runner.errors import OutputError

GROUP_COMMIT_SECONDS: Final = 0.02
# One encoder for every line: json.dumps with options builds a new one per call, which
# shows in a run's per-sample CPU (two lines a sample).
_LINE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dump_line(doc: dict[str, Any]) -> bytes:
    return (_LINE.encode(doc) + "\n").encode("utf-8")


def write_atomic(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path, names: tuple[str, ...]) -> list[str]:
    """Remove what write_atomic leaves of the files `names` when the process is killed
    between writing a temporary file and renaming it (`.<name>.<random>.tmp`)."""
    removed = []
    for name in names:
        for temp in folder.glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
                removed.append(temp.name)
    return sorted(removed)


def write_json(path: Path, doc: Any) -> None:
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    write_atomic(path, text.encode("utf-8"))


def write_lines(path: Path, docs: list[dict[str, Any]]) -> None:
    """Replace a journal with `docs` in one atomic step (the compaction at the end)."""
    write_atomic(path, b"".join(dump_line(d) for d in docs))


def read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The journal's records and the byte length of its intact part.

    What follows the last newline is a torn line and is dropped, and so are bad lines at
    the very end (a crash can leave garbage where the last write was going). A bad line
    followed by good ones means the file was edited or is not ours: a resume must not guess.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    records: list[dict[str, Any]] = []
    intact = 0
    bad_line = 0
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            doc = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None
        if not isinstance(doc, dict):
            bad_line = bad_line or number
            continue
        if bad_line:
            raise OutputError(
                f"{path} line {bad_line} is not a JSON object: the file was edited or is not "
                "this runner's. Remove it (or the output folder) to start over"
            )
        records.append(doc)
        intact += len(line) + 1
    return records, intact


class Journal:
    """An append-only JSONL file whose writes and fsyncs happen on a background thread."""

    _CLOSE = b""

    def __init__(self, path: Path, intact: int | None = None) -> None:
        """Open for appending; `intact` (from read_journal) cuts off a torn last line."""
        self.path = path
        self._file = path.open("ab")
        if intact is not None and self._file.tell() != intact:
            self._file.truncate(intact)
            self._file.seek(intact)
        self._queue: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name=f"journal-{path.name}")
        self._thread.daemon = True
        self._thread.start()

    def append(self, doc: dict[str, Any]) -> None:
        if self._error is not None:
            raise OutputError(f"cannot write {self.path}: {self._error}")
        self._queue.put(dump_line(doc))

    def close(self) -> None:
        """Wait until every appended line is on disk."""
        self._queue.put(self._CLOSE)
        self._thread.join()
        try:
            self._file.close()
        except (OSError, ValueError) as e:  # what the failed write left in the buffer
            self._error = self._error or e
        if self._error is not None:
            raise OutputError(f"cannot write {self.path}: {self._error}")

    def _write_loop(self) -> None:
        closing = False
        while not closing:
            batch = [self._queue.get()]
            if batch[0] != self._CLOSE:
                time.sleep(GROUP_COMMIT_SECONDS)  # let the lines of the next moments join
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            closing = batch[-1] == self._CLOSE
            data = b"".join(batch)
            if not data or self._error is not None:
                continue
            try:
                self._file.write(data)
                self._file.flush()
                os.fsync(self._file.fileno())
            except (OSError, ValueError) as e:  # ValueError: the file was closed under us
                self._error = e


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; some filesystems cannot open folders, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
