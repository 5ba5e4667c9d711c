"""The flow of samples: a burst of answers sends its next requests before its bookkeeping
(unless the requests go from another process), and what the bookkeeping raises still ends
the run.

The sender here is a stand-in that holds every attempt until the test lets a burst go, so
that the order of sends and journal lines is the pipeline's alone, not a network's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from eval_runner import pipeline, scorers
from eval_runner.client import ModelClient, Reply
from eval_runner.config import Endpoint, Retry
from eval_runner.errors import OutputError
from eval_runner.progress import Progress
from eval_runner.samples import Sample
from eval_runner.store import Journal

ANSWER = json.dumps({"choices": [{"message": {"content": "42"}}]}).encode()


class GatedSender:
    """Answers every attempt with "42", but only when the test opens the gate."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.gate: asyncio.Future[None] | None = None
        self.waiting = 0

    async def send(self, content: bytes) -> Reply:
        self.log.append("send")
        if self.gate is None or self.gate.done():
            self.gate = asyncio.get_running_loop().create_future()
        self.waiting += 1
        await self.gate
        self.waiting -= 1
        return Reply(200, ANSWER)

    async def aclose(self) -> None:
        pass


class LoggedJournal(Journal):
    def __init__(self, path: Path, log: list[str], fail_at: int | None = None) -> None:
        super().__init__(path)
        self.log = log
        self.fail_at = fail_at

    def append(self, doc: dict[str, Any]) -> None:
        self.log.append("journal")
        if self.fail_at is not None and self.log.count("journal") >= self.fail_at:
            raise OutputError(f"cannot write {self.path}: No space left on device")
        super().append(doc)


def flow(
    tmp_path: Path,
    sender: GatedSender,
    predictions: Journal,
    concurrency: int,
    record_after_sends: bool = True,
):
    reviews = Journal(tmp_path / "reviews.jsonl")
    progress = Progress(tmp_path, 100, 3600, open("/dev/null", "w"))  # noqa: SIM115
    model = ModelClient(Endpoint("http://model.invalid/v1/chat/completions"), sender, Retry())
    reviewer = pipeline.Reviewer(["exact_match"], {"exact_match": scorers.exact_match})
    return pipeline.Pipeline(
        reviewer=reviewer,
        progress=progress,
        predictions=predictions,
        reviews=reviews,
        request_body=lambda s: {"messages": [{"role": "user", "content": s.query}]},
        model=model,
        concurrency=concurrency,
        record_after_sends=record_after_sends,
    )


async def open_bursts(sender: GatedSender, concurrency: int, run: asyncio.Task[None]) -> None:
    """Let each burst of `concurrency` attempts go, once they are all waiting."""
    while not run.done():
        if sender.waiting == concurrency and sender.gate is not None:
            sender.gate.set_result(None)
        await asyncio.sleep(0.001)


def samples(n: int) -> list[Sample]:
    return [Sample(id=str(i), query=f"q{i}", answers=("42",)) for i in range(n)]


def test_a_burst_of_answers_sends_its_next_requests_before_its_bookkeeping(tmp_path):
    concurrency = 8
    log: list[str] = []
    sender = GatedSender(log)
    journal = LoggedJournal(tmp_path / "predictions.jsonl", log)
    the_flow = flow(tmp_path, sender, journal, concurrency)

    async def main() -> None:
        run = asyncio.create_task(the_flow.run(samples(3 * concurrency), [], {}))
        await asyncio.gather(run, open_bursts(sender, concurrency, run))

    asyncio.run(main())
    journal.close()
    burst = ["send"] * concurrency
    written = ["journal"] * concurrency
    # The first burst's lines come after the second burst has gone out, and so on.
    assert log == burst + burst + written + burst + written + written
    assert sorted(the_flow.reviews, key=int) == [str(i) for i in range(3 * concurrency)]
    assert all(r["scores"]["exact_match"] == 1.0 for r in the_flow.reviews.values())


def test_with_a_sender_in_another_process_each_answer_is_recorded_at_once(tmp_path):
    concurrency = 8
    log: list[str] = []
    sender = GatedSender(log)
    journal = LoggedJournal(tmp_path / "predictions.jsonl", log)
    the_flow = flow(tmp_path, sender, journal, concurrency, record_after_sends=False)

    async def main() -> None:
        run = asyncio.create_task(the_flow.run(samples(3 * concurrency), [], {}))
        await asyncio.gather(run, open_bursts(sender, concurrency, run))

    asyncio.run(main())
    journal.close()
    each = ["journal", "send"] * concurrency
    assert log == ["send"] * concurrency + each + each + ["journal"] * concurrency
    assert len(the_flow.reviews) == 3 * concurrency


@pytest.mark.parametrize(
    "fail_at",
    [
        pytest.param(3, id="a line of a burst that more requests follow"),
        pytest.param(24, id="the last line, recorded after the workers are done"),
    ],
)
def test_a_journal_that_cannot_be_written_ends_the_run(tmp_path, fail_at):
    concurrency = 8
    log: list[str] = []
    sender = GatedSender(log)
    journal = LoggedJournal(tmp_path / "predictions.jsonl", log, fail_at=fail_at)
    the_flow = flow(tmp_path, sender, journal, concurrency)

    async def main() -> None:
        run = asyncio.create_task(the_flow.run(samples(3 * concurrency), [], {}))
        await asyncio.gather(run, open_bursts(sender, concurrency, run))

    with pytest.raises(OutputError, match="No space left on device"):
        asyncio.run(main())
    journal.close()
