"""progress.parse: the last progress a task's log tells, in the forms frameworks print."""

from __future__ import annotations

import pytest

from eval_operator import progress
from eval_operator.progress import Progress


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param("EVAL_PROGRESS done=120 total=400\n", Progress(120, 400), id="runner line"),
        pytest.param(
            "Requesting API:   0%|          | 0/20 [00:00<?, ?it/s]\rRequesting API:   5%|▌"
            "         | 1/20 [00:00<00:08,  2.21it/s]\rRequesting API:  10%|█         | 2/20 "
            "[00:00<00:06,  2.69it/s]",
            Progress(2, 20),
            id="lm-eval bar",
        ),
        pytest.param(
            "Generating results for smollm2:  20%|██        | 1/5 [00:11<00:45, 11.50s/it]",
            Progress(1, 5),
            id="bfcl bar",
        ),
        pytest.param(
            "100%|██████████| 5/5 [00:38<00:00,  7.67s/it]", Progress(5, 5), id="finished bar"
        ),
        pytest.param("3/4 [00:01]", Progress(3, 4), id="bar without eta"),
        pytest.param(
            "EVAL_PROGRESS done=9 total=10\n 4/10 [00:01<00:02]\n",
            Progress(4, 10),
            id="a bar after the line",
        ),
        pytest.param(
            " 4/10 [00:01<00:02]\nEVAL_PROGRESS done=9 total=10\n",
            Progress(9, 10),
            id="a line after the bar",
        ),
        pytest.param("", None, id="empty"),
        pytest.param("2026/12/02 12:00:00 loaded 3/4 shards\n", None, id="a fraction in text"),
        pytest.param("EVAL_PROGRESS done=5 total=3\n", None, id="done beyond total"),
        pytest.param("0/0 [00:00<?, ?it/s]", None, id="zero total"),
        pytest.param("http://h/v1/12/20 [00:01<00:02]", None, id="digits in a path"),
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
