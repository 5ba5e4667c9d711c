"""The flow of samples: model calls, then scoring, then the journals and progress.

    pending samples --(MAX_CONCURRENCY model workers)--> predictions.jsonl --> scorers
                                                          \\--(judge workers)--> llm_judge
                                                                           --> reviews.jsonl

A fixed number of workers pull samples from one shared iterator, so the number of model
requests in flight can never exceed MAX_CONCURRENCY, and the memory held does not grow
with the dataset (no task per sample). A worker that backs off before a retry keeps its
slot: an overloaded service sees fewer requests, not the same number delayed. The judge
has its own workers, so a slow judge does not hold the model's slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from eval_runner import judge, scorers
from eval_runner.client import Completion, ModelClient
from eval_runner.errors import SampleError
from eval_runner.progress import Progress
from eval_runner.samples import Sample
from eval_runner.store import Journal

Record = dict[str, Any]
JUDGE: str = "llm_judge"


def prediction_record(sample: Sample, completion: Completion) -> Record:
    record: Record = {
        "id": sample.id,
        "input": sample.digest,
        "prediction": completion.text,
        "latency": round(completion.latency, 6),
        "attempts": completion.attempts,
    }
    if completion.prompt_tokens is not None:
        record["prompt_tokens"] = completion.prompt_tokens
    if completion.completion_tokens is not None:
        record["completion_tokens"] = completion.completion_tokens
    return record


def error_record(sample_id: str, error: SampleError) -> Record:
    return {"id": sample_id, "error": str(error), "attempts": error.attempts}


class Reviewer:
    """Scores one prediction with every configured scorer except the judge."""

    def __init__(self, names: Sequence[str], simple: Mapping[str, scorers.Scorer]) -> None:
        self.names = tuple(names)
        self.simple = dict(simple)
        self.judged = JUDGE in self.names

    def review(self, sample: Sample, prediction: Record) -> Record:
        record: Record = {"id": sample.id, "answer": list(sample.answers)}
        if "error" in prediction:
            record["error"] = prediction["error"]
            record["scores"] = dict.fromkeys(self.names, 0.0)
            record["reasons"] = dict.fromkeys(self.names, "no prediction")
            return record
        text = str(prediction["prediction"])
        record["prediction"] = text
        record["scores"] = {}
        record["reasons"] = {}
        for name, scorer in self.simple.items():
            score = scorer(text, sample.answers)
            record["scores"][name] = score.value
            record["reasons"][name] = score.reason
        return record


def with_judge(review: Record, score: scorers.Score | SampleError) -> Record:
    if isinstance(score, SampleError):
        review["scores"][JUDGE] = 0.0
        review["reasons"][JUDGE] = "the judge failed"
        review["error"] = f"judge: {score}"
    else:
        review["scores"][JUDGE] = score.value
        review["reasons"][JUDGE] = score.reason
    return review


class Pipeline:
    def __init__(
        self,
        reviewer: Reviewer,
        progress: Progress,
        predictions: Journal | None,
        reviews: Journal,
        request_body: Callable[[Sample], dict[str, Any]],
        model: ModelClient | None,
        concurrency: int,
        judge_client: ModelClient | None = None,
        judge_prompt: str = "",
        judge_concurrency: int = 1,
        record_after_sends: bool = True,
    ) -> None:
        """`record_after_sends`: record a loop pass's answers once its requests are out
        (_model_worker); False records each at once, for a sender in another process,
        whose requests go out in parallel with this process's work anyway (with the
        deferral, C = 128 lost 0.03 of C / D there: benchmarks/runner_vs_peers.py)."""
        self.reviewer = reviewer
        self.progress = progress
        self.predictions_journal = predictions
        self.reviews_journal = reviews
        self.request_body = request_body
        self.model = model
        self.concurrency = concurrency
        self.judge_client = judge_client
        self.judge_prompt = judge_prompt
        self.judge_concurrency = judge_concurrency
        self.record_after_sends = record_after_sends
        self.predictions: dict[str, Record] = {}
        self.reviews: dict[str, Record] = {}
        self._judge_queue: asyncio.Queue[tuple[Sample, Record] | None] = asyncio.Queue()
        self._answered: list[tuple[Sample, Record]] = []  # not yet recorded
        self._recording: asyncio.TimerHandle | None = None
        self._failure: BaseException | None = None

    async def run(
        self,
        pending: Sequence[Sample],
        known: Sequence[tuple[Sample, Record]],
        judged: Mapping[str, Record],
    ) -> None:
        """Call the model for `pending`; score everything; reuse `judged` judge reviews."""
        judges = [
            asyncio.create_task(self._judge_worker())
            for _ in range(self.judge_concurrency if self.reviewer.judged else 0)
        ]
        try:
            for sample, prediction in known:
                self.predictions[sample.id] = prediction
                self._score(sample, prediction, judged.get(sample.id), worked=False)
            queue = iter(pending)
            workers = min(self.concurrency, len(pending))
            await asyncio.gather(*(self._model_worker(queue) for _ in range(workers)))
            self._record_now()
            for _ in judges:
                self._judge_queue.put_nowait(None)
            await asyncio.gather(*judges)
        finally:
            if self._recording is not None:
                self._recording.cancel()
            for task in judges:
                task.cancel()

    async def _model_worker(self, queue: Iterator[Sample]) -> None:
        assert self.model is not None
        for sample in queue:
            if self._failure is not None:
                raise self._failure
            try:
                completion = await self.model.complete(self.request_body(sample))
                prediction = prediction_record(sample, completion)
            except SampleError as e:
                prediction = error_record(sample.id, e)
            self._answered.append((sample, prediction))
            if not self.record_after_sends:
                self._record_answers()
            elif self._recording is None:
                # After this loop pass's requests have gone out: answers come in bursts,
                # and a burst's bookkeeping done first would delay each next request.
                loop = asyncio.get_running_loop()
                self._recording = loop.call_later(0, self._record_later)

    def _record_later(self) -> None:
        self._recording = None
        try:
            self._record_answers()
        except BaseException as e:  # a callback's error would be lost: a worker raises it
            self._failure = e

    def _record_now(self) -> None:
        """Record what is left, once the workers are done; raise what recording raised."""
        if self._recording is not None:
            self._recording.cancel()
            self._recording = None
        if self._failure is not None:
            raise self._failure
        self._record_answers()

    def _record_answers(self) -> None:
        answered, self._answered = self._answered, []
        for sample, prediction in answered:
            self.predictions[sample.id] = prediction
            if self.predictions_journal is not None:
                self.predictions_journal.append(prediction)
            self._score(sample, prediction, None, worked=True)

    def _score(
        self, sample: Sample, prediction: Record, judged: Record | None, worked: bool
    ) -> None:
        review = self.reviewer.review(sample, prediction)
        if self.reviewer.judged and "error" not in review:
            if judged is None:
                self._judge_queue.put_nowait((sample, review))
                return
            reused = scorers.Score(judged["scores"][JUDGE], judged["reasons"][JUDGE])
            review = with_judge(review, reused)
        self._finish(review, worked=worked)

    async def _judge_worker(self) -> None:
        assert self.judge_client is not None
        while (item := await self._judge_queue.get()) is not None:
            sample, review = item
            try:
                score: scorers.Score | SampleError = await judge.grade(
                    self.judge_client, self.judge_prompt, sample, review["prediction"]
                )
            except SampleError as e:
                score = e
            self._finish(with_judge(review, score), worked=True)

    def _finish(self, review: Record, worked: bool) -> None:
        """Record a finished review; only reviews that took work go into the journal."""
        self.reviews[review["id"]] = review
        if worked:
            self.reviews_journal.append(review)
        self.progress.advance(error="error" in review, worked=worked)
