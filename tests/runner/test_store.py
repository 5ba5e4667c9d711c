"""Output files: atomic documents, and journals that survive a torn last line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from eval_runner import store
from eval_runner.errors import OutputError


def test_a_document_replaces_the_old_one_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    store.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_failed_write_keeps_the_old_document(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"old": true}')
    with pytest.raises(TypeError):
        store.write_json(path, {"not serialisable": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["report.json"]


GOOD = b'{"id": "1"}\n{"id": "2"}\n'


@pytest.mark.parametrize(
    ("content", "ids", "intact"),
    [
        (b"", [], 0),
        (GOOD, ["1", "2"], len(GOOD)),
        (GOOD + b'{"id": "3", "predic', ["1", "2"], len(GOOD)),
        (GOOD + b'{"id": "3"}', ["1", "2"], len(GOOD)),
        (GOOD + b"\x00\x00\x00\n", ["1", "2"], len(GOOD)),
        (GOOD + b"[1]\n", ["1", "2"], len(GOOD)),
    ],
    ids=[
        "an empty journal",
        "whole lines",
        "a torn last line is dropped",
        "a last line without its newline is dropped",
        "garbage at the end after a crash is dropped",
        "a last line that is no object is dropped",
    ],
)
def test_reading_a_journal(tmp_path, content, ids, intact):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(content)
    records, length = store.read_journal(path)
    assert [r["id"] for r in records] == ids
    assert length == intact


def test_a_bad_line_before_good_ones_is_not_guessed_about(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(b'{"id": "1"}\nnot json\n{"id": "3"}\n')
    with pytest.raises(OutputError, match="line 2 is not a JSON object"):
        store.read_journal(path)


def test_a_missing_journal_is_empty(tmp_path):
    assert store.read_journal(tmp_path / "nothing.jsonl") == ([], 0)


def test_appending_after_a_torn_line_starts_a_clean_line(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(GOOD + b'{"id": "3", "pre')
    _, intact = store.read_journal(path)
    journal = store.Journal(path, intact)
    journal.append({"id": "3", "prediction": "x"})
    journal.close()
    records, _ = store.read_journal(path)
    assert records == [{"id": "1"}, {"id": "2"}, {"id": "3", "prediction": "x"}]


def test_every_appended_line_is_on_disk_after_close(tmp_path):
    path = tmp_path / "reviews.jsonl"
    journal = store.Journal(path)
    for i in range(500):
        journal.append({"id": str(i), "text": "é" * (i % 7)})
    journal.close()
    lines = path.read_text("utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [str(i) for i in range(500)]


def test_a_journal_on_a_full_disk_says_so():
    journal = store.Journal(Path("/dev/full"))
    journal.append({"id": "1"})
    with pytest.raises(OutputError, match="No space left on device"):
        journal.close()
