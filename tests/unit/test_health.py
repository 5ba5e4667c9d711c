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
