"""progress.parse: the last progress a task's log tells, in the forms frameworks print."""

from __future__ import annotations

import pytest

from eval_operator import progress
from eval_operator.progress import Progress


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("EVAL_PROGRESS done=120 total=400\n", Progress(120, 400)),
        # lm-evaluation-harness 0.4.13 (its requests), one redrawn line.
        (
            "Requesting API:   0%|          | 0/20 [00:00<?, ?it/s]\rRequesting API:   5%|▌"
            "         | 1/20 [00:00<00:08,  2.21it/s]\rRequesting API:  10%|█         | 2/20 "
            "[00:00<00:06,  2.69it/s]",
            Progress(2, 20),
        ),
        # BFCL's generation.
        (
            "Generating results for smollm2:  20%|██        | 1/5 [00:11<00:45, 11.50s/it]",
            Progress(1, 5),
        ),
        # tqdm's final form: elapsed only.
        ("100%|██████████| 5/5 [00:38<00:00,  7.67s/it]", Progress(5, 5)),
        ("3/4 [00:01]", Progress(3, 4)),
        # The last one wins, whichever form.
        ("EVAL_PROGRESS done=9 total=10\n 4/10 [00:01<00:02]\n", Progress(4, 10)),
        (" 4/10 [00:01<00:02]\nEVAL_PROGRESS done=9 total=10\n", Progress(9, 10)),
        ("", None),
        ("2026/12/02 12:00:00 loaded 3/4 shards\n", None),  # no time bracket: not a bar
        ("EVAL_PROGRESS done=5 total=3\n", None),  # more done than there are
        ("0/0 [00:00<?, ?it/s]", None),
        ("http://h/v1/12/20 [00:01<00:02]", None),  # part of a path
    ],
    ids=[
        "runner line",
        "lm-eval bar",
        "bfcl bar",
        "finished bar",
        "bar without eta",
        "a bar after the line",
        "a line after the bar",
        "empty",
        "a fraction in text",
        "done beyond total",
        "zero total",
        "digits in a path",
    ],
)
def test_parse(log, expected):
    assert progress.parse(log) == expected


def test_the_poller_allows_one_read_per_interval_per_run():
    now = [0.0]
    poller = progress.Poller(30.0, lambda: now[0])
    assert poller.take("uid/a") and poller.take("uid/b")
    assert not poller.take("uid/a")
    now[0] = 29.0
    assert not poller.take("uid/a") and poller.wait("uid/a") == pytest.approx(1.0)
    now[0] = 30.0
    assert poller.take("uid/a")
    poller.forget({"uid/a"}, prefix="uid/")
    assert poller.wait("uid/b") == 0.0, "a run no longer running is forgotten"
    assert poller.wait("uid/a") == pytest.approx(30.0)
