"""Waiting for a model service that is not up yet, and giving up on one that never is."""

from __future__ import annotations

import socket
import threading
import time

from eval_runner import run
from localkube.mockmodel import MockModel, answer_from
from tests.runner.support import environment, qa_dataset, questions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_run_waits_for_a_service_that_comes_up_late(tmp_path, capsys):
    answers = questions(3)
    port = free_port()  # nothing listens there until the timer below starts a server
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    started: list[MockModel] = []

    def come_up() -> None:
        late = MockModel(answer_from(answers), port=port)
        started.append(late.__enter__())

    timer = threading.Timer(0.6, come_up)
    timer.start()
    try:
        env = environment(
            url,
            qa_dataset(tmp_path / "set.jsonl", 3),
            tmp_path / "out",
            EVAL_WAIT_FOR_MODEL_SECONDS="10",
        )
        began = time.monotonic()
        assert run.main(environ=env) == 0
        waited = time.monotonic() - began
    finally:
        timer.join()
        for late in started:
            late.__exit__()
    out = capsys.readouterr().out
    assert "waiting up to 10s for the model service at" in out
    assert "the model service answered after" in out
    assert 0.6 <= waited < 3.0
    assert len(started[0].arrivals) == 3


def test_a_service_that_never_answers_fails_the_run_after_the_limit(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    env = environment(
        url,
        qa_dataset(tmp_path / "set.jsonl", 3),
        tmp_path / "out",
        EVAL_WAIT_FOR_MODEL_SECONDS="0.5",
    )
    began = time.monotonic()
    assert run.main(environ=env) == 1
    elapsed = time.monotonic() - began
    err = capsys.readouterr().err
    assert f"the model service at {url} gave no HTTP answer within 0.5s" in err
    assert "EVAL_WAIT_FOR_MODEL_SECONDS" in err and "ClientConnectorError" in err
    assert 0.5 <= elapsed < 2.0
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_any_http_answer_means_the_service_is_up(tmp_path):
    answers = questions(2)
    with MockModel(answer_from(answers), token="Bearer t") as model:
        env = environment(
            model.url,
            qa_dataset(tmp_path / "set.jsonl", 2),
            tmp_path / "out",
            EVAL_AUTHORIZATION_HEADER_VALUE="Bearer t",
            EVAL_WAIT_FOR_MODEL_SECONDS="0.2",
        )
        assert run.main(environ=env) == 0, "the GET got a 405, and that is an answer"
