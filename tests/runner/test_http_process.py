"""The model's requests from a second process: frames, the choice, and the child's faults.

The child is the real one (`python -c ... http_process.main()`), against the tests' real
HTTP service; its death is a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
from pathlib import Path

import pytest

from eval_runner import config, http_process, run
from eval_runner.client import Transient
from eval_runner.config import Endpoint
from eval_runner.errors import ConfigError, HttpProcessGone
from eval_runner.http_process import Frames, ProcessSender, frame
from localkube.mockmodel import MockModel, Reply, answer_from
from tests.runner.support import environment, journal, qa_dataset, questions

SECRET = "Bearer child-secret-0451"
BODY = b'{"messages": [{"role": "user", "content": "q01"}]}'


def children() -> list[int]:
    """This process's child processes that run the HTTP side."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"eval_runner.http_process" in cmdline:
            found.append(int(entry.name))
    return found


def test_frames_come_out_whole_however_the_bytes_are_cut():
    messages = [(1, b"x" * 300), (2, "two", None), (3,)]
    stream = b"".join(frame(m) for m in messages)
    frames = Frames()
    got = [m for i in range(len(stream)) for m in frames.feed(stream[i : i + 1])]
    assert got == messages and not frames.buffer
    assert Frames().feed(stream) == messages
    partial = Frames()
    assert partial.feed(stream[:7]) == [] and partial.feed(stream[7:]) == messages


@pytest.mark.parametrize(
    ("concurrency", "cpus", "expected"),
    [(128, 2.0, True), (32, 4.0, True), (31, 4.0, False), (128, 1.5, False), (128, 1.0, False)],
)
def test_auto_takes_a_second_process_for_many_requests_on_two_cores(concurrency, cpus, expected):
    assert http_process.worth_it(concurrency, lambda: cpus) is expected


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("max 100000\n", None), ("150000 100000\n", 1.5), ("50000 100000", 0.5), ("garbage", None)],
)
def test_usable_cpus_honour_a_container_cpu_limit(tmp_path, cpu_max, limit):
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    assert http_process.usable_cpus(path) == (affinity if limit is None else min(affinity, limit))
    assert http_process.usable_cpus(tmp_path / "absent") == affinity


def with_child(behave, check, size=4, timeout=5.0):
    """check(sender, model) with a started ProcessSender; the child is ended after."""

    async def main():
        sender = await ProcessSender.start(
            Endpoint(model.url, header_value=SECRET), size, timeout, True
        )
        try:
            return await check(sender, model)
        finally:
            await sender.aclose()

    with MockModel(behave, token=SECRET) as model:
        return asyncio.run(main())


def test_the_child_sends_with_the_auth_header_that_never_reaches_its_argv_or_environment():
    async def check(sender, model):
        reply = await sender.send(BODY)
        assert reply.status == 200 and b'"a01"' in reply.content
        (pid,) = children()
        for name in ("cmdline", "environ"):
            assert b"child-secret" not in Path(f"/proc/{pid}/{name}").read_bytes()
        return model.unauthorized

    assert with_child(answer_from(questions(1)), check) == 0


def test_failures_come_back_as_the_same_kinds_as_in_process():
    def behave(key, attempt):
        return {
            "slow": Reply("late", delay=2.0),
            "gone": Reply(drop=True),
            "busy": Reply(status=503, headers={"Retry-After": "7"}),
        }[key]

    def body(key: str) -> bytes:
        return f'{{"messages": [{{"role": "user", "content": "{key}"}}]}}'.encode()

    async def check(sender, model):
        busy = await sender.send(body("busy"))
        assert (busy.status, busy.retry_after) == (503, "7")
        with pytest.raises(Transient, match="connection broke"):
            await sender.send(body("gone"))
        with pytest.raises(Transient, match=r"no answer within 0.5s"):
            await sender.send(body("slow"))

    with_child(behave, check, timeout=0.5)


def test_a_caller_that_gives_up_leaves_nothing_behind_and_the_next_request_works():
    def behave(key, attempt):
        return Reply("late", delay=1.0) if key == "slow" else Reply("a01")

    async def check(sender, model):
        slow = b'{"messages": [{"role": "user", "content": "slow"}]}'
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await sender.send(slow)
        assert sender.watch.pending == {}
        assert (await sender.send(BODY)).status == 200
        await asyncio.sleep(1.2)  # the slow reply arrives, for nobody
        assert sender.watch.pending == {}
        assert (await sender.send(BODY)).status == 200

    with_child(behave, check)


def test_a_killed_child_fails_the_requests_in_flight_and_every_later_one():
    async def check(sender, model):
        waiting = asyncio.ensure_future(sender.send(b'{"messages": [{"content": "slow"}]}'))
        await asyncio.sleep(0.3)
        (pid,) = children()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(HttpProcessGone, match="exited with code -9"):
            await waiting
        with pytest.raises(HttpProcessGone, match="EVAL_HTTP_PROCESS=false"):
            await sender.send(BODY)

    with_child(lambda key, attempt: Reply("late", delay=3.0), check)


def test_a_closed_sender_leaves_no_child():
    async def check(sender, model):
        await sender.send(BODY)
        assert len(children()) == 1
        await sender.aclose()
        assert children() == []
        assert sender.child.get_returncode() == 0

    with_child(answer_from(questions(1)), check)


def test_a_run_whose_child_dies_stops_and_records_no_sample_as_failed(tmp_path):
    killed = []

    def behave(key, attempt):
        if key == "q05" and not killed:
            killed.extend(children())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        return Reply(f"a{key[1:]}", delay=0.05)

    env = environment(None, qa_dataset(tmp_path / "set.jsonl", 20), tmp_path / "out")
    with MockModel(behave) as model:
        env.update(EVAL_INFERENCE_URL=model.url, EVAL_HTTP_PROCESS="true", MAX_CONCURRENCY="2")
        with pytest.raises(HttpProcessGone, match="exited with code -9"):
            asyncio.run(run.run(config.from_env(env), io.StringIO()))
    assert len(killed) == 1
    predictions = journal(tmp_path / "out" / "predictions.jsonl")
    assert predictions and all("error" not in p for p in predictions)
    assert children() == []


@pytest.mark.parametrize(("cpus", "offloaded"), [(4.0, True), (1.0, False)])
def test_auto_is_the_default_and_says_when_it_uses_the_second_process(
    tmp_path, monkeypatch, cpus, offloaded
):
    monkeypatch.setattr(http_process, "usable_cpus", lambda: cpus)
    env = environment(None, qa_dataset(tmp_path / "set.jsonl", 40), tmp_path / "out")
    del env["EVAL_HTTP_PROCESS"]
    out = io.StringIO()
    with MockModel(answer_from(questions(40))) as model:
        env.update(EVAL_INFERENCE_URL=model.url, MAX_CONCURRENCY="32")
        metrics = asyncio.run(run.run(config.from_env(env), out))
    assert metrics["exact_match"] == 1.0
    assert ("second process" in out.getvalue()) is offloaded


@pytest.mark.parametrize(("value", "setting"), [("auto", None), ("TRUE", True), ("0", False)])
def test_the_setting_reads_auto_true_or_false(tmp_path, value, setting):
    env = environment(None, tmp_path / "set.jsonl", tmp_path / "out", EVAL_HTTP_PROCESS=value)
    assert config.from_env(env).http_process is setting


def test_a_bad_setting_is_named(tmp_path):
    env = environment(None, tmp_path / "set.jsonl", tmp_path / "out", EVAL_HTTP_PROCESS="often")
    with pytest.raises(ConfigError, match="EVAL_HTTP_PROCESS='often' must be auto, true or false"):
        config.from_env(env)
