"""/healthz fails once kopf reports a watcher that failed for good."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.error
import urllib.request

import pytest

from eval_operator import health, server


@pytest.fixture
def healthz():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(server.start("127.0.0.1", port))
    health.HEALTH.reset()

    def get() -> tuple[int, str]:
        async def call() -> tuple[int, str]:
            def fetch() -> tuple[int, str]:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
                        return r.status, r.read().decode()
                except urllib.error.HTTPError as e:
                    return e.code, e.read().decode()

            return await asyncio.to_thread(fetch)

        return loop.run_until_complete(call())

    yield get
    loop.run_until_complete(runner.cleanup())
    loop.close()
    health.HEALTH.reset()


def test_healthz_is_ok_until_a_watcher_fails(healthz):
    assert healthz() == (200, "ok\n")
    # What kopf logs (kopf._cogs.aiokits.aiotasks) when a watcher gives up.
    logging.getLogger("kopf._cogs.aiokits.aiotasks").error(
        "Watcher for jobs.v1.batch@team-a has failed: 403 Forbidden"
    )
    code, text = healthz()
    assert code == 503
    assert "Watcher for jobs.v1.batch@team-a" in text


def test_other_kopf_errors_do_not_fail_healthz(healthz):
    logging.getLogger("kopf.objects").error("Handler 'evaltask_event' failed with an exception")
    assert healthz()[0] == 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# (seconds after the first failure, further failures at those seconds, a pass's call answered
# at that second or None, whether /healthz fails at the end)
STREAKS = [
    pytest.param([0.0], None, 5.0, False, id="one failure is a blip, not a problem"),
    pytest.param([0, 5, 10], None, 10.0, True, id="failures for 10 s make it fail"),
    pytest.param([0, 10, 20], None, 51.0, False, id="30 s without a failure end the streak"),
    pytest.param([0, 10, 20], 21.0, 21.0, False, id="an answered call ends the pass's streak"),
]


@pytest.mark.parametrize(("failures", "answered", "at", "fails"), STREAKS)
def test_failed_requests_fail_healthz_while_they_last(failures, answered, at, fails):
    clock = Clock()
    requests = health._Requests(clock)
    start = clock.now
    for second in failures:
        clock.now = start + second
        requests.failed("operator", "GET /apis/batch/v1/jobs: 0 Unreachable: refused")
    if answered is not None:
        clock.now = start + answered
        requests.answered("operator")
    clock.now = start + at
    problems = requests.problems()
    assert bool(problems) is fails
    if fails:
        assert "operator's requests to the API server have failed for" in problems[0]
        assert "Unreachable: refused" in problems[0]


def test_kopfs_failed_requests_reach_healthz_and_the_log_once(healthz, caplog, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(health, "REQUESTS", health._Requests(clock))
    kopf_log = logging.getLogger("kopf._cogs.clients.api")
    what = "GET https://api/apis/batch/v1/jobs?watch=true -> ClientConnectorError('refused')"
    with caplog.at_level(logging.WARNING, logger="eval_operator.health"):
        for _ in range(3):
            # What kopf logs (kopf._cogs.clients.api) each time a request fails.
            kopf_log.error(f"Request attempt #2 failed; will retry: {what}")
            clock.now += 6
    code, text = healthz()
    assert code == 503 and "kopf's requests to the API server have failed" in text
    assert "ClientConnectorError" in text
    said = [r.getMessage() for r in caplog.records if r.name == "eval_operator.health"]
    assert len(said) == 1 and "the API server is unreachable" in said[0]
