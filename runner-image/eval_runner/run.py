"""`python -m eval_runner run`: evaluate a model service on a dataset, write the results.

The steps, in order: read the configuration and the dataset (fail fast on mistakes);
decide the mode (inference and evaluation, or evaluation only when the rows carry
predictions); take up what an earlier run left in the output folder; wait for the model
service; run the pipeline; write predictions.jsonl and reviews.jsonl compacted, then
report.json, then metrics.json, so that metrics.json exists only when the rest does.

Output folder, EVAL_OUTPUT_DIR:
    metrics.json       the contract's result, read by the collector
    predictions.jsonl  the model's answer (or the error) per sample; the resume journal
    reviews.jsonl      each sample's scores and the reasons for them
    report.json        configuration, counts, metrics and the most common errors
    progress.json      done, total, errors and ETA, while it runs
    resume.json        fingerprints of the settings the journals were written with
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from eval_runner import config as configuration
from eval_runner import (
    http_process,
    pipeline,
    prompts,
    results,
    resume,
    samples,
    scorers,
    store,
    summary,
    transport,
)
from eval_runner import progress as progress_mod
from eval_runner.client import HttpSender, ModelClient, Sender
from eval_runner.config import Config, Endpoint
from eval_runner.errors import ConfigError, RunnerError
from eval_runner.progress import Progress
from eval_runner.waiting import wait_for_model

PREDICTIONS = resume.PREDICTIONS
REVIEWS = resume.REVIEWS
REPORT = "report.json"


def main(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> int:
    if argv:
        print(
            "usage: python -m eval_runner run  (configured by EVAL_* variables; see README.md)",
            file=sys.stderr,
        )
        return 2
    try:
        config = configuration.from_env(os.environ if environ is None else environ)
        result = asyncio.run(run(config, sys.stdout))
    except RunnerError as e:
        print(f"run: {e}", file=sys.stderr)
        return 1
    print("run: " + " ".join(f"{k}={v:g}" for k, v in result.items()), flush=True)
    return 0


def resolve_mode(config: Config, rows: Sequence[samples.Sample]) -> str:
    if config.mode != "auto":
        return config.mode
    return "evaluation" if all(s.prediction is not None for s in rows) else "inference"


async def run(config: Config, out: TextIO, rng: random.Random | None = None) -> dict[str, float]:
    """The whole run; the metrics written to metrics.json, or RunnerError.

    `rng` draws the backoff jitter; tests seed it to know the schedule.
    """
    started = datetime.now(UTC)
    rows = samples.load(config.dataset, config.fields, config.limit)
    mode = resolve_mode(config, rows)
    inference = mode == "inference"
    samples.check(rows, config.fields, inference, needs_answer=True)
    if inference and config.model is None:
        raise ConfigError("EVAL_INFERENCE_URL is not set, and the rows carry no predictions")
    output = config.output_dir
    output.mkdir(parents=True, exist_ok=True)
    # A result left by an earlier run must not be collected if this one fails.
    (output / results.FILE_NAME).unlink(missing_ok=True)
    # A kill between an atomic write's temporary file and its rename leaves the former.
    store.remove_stale_temporaries(
        output,
        (
            results.FILE_NAME,
            REPORT,
            PREDICTIONS,
            REVIEWS,
            progress_mod.FILE_NAME,
            resume.FILE_NAME,
        ),
    )

    earlier = resume.take_up(config, rows, mode, out)
    pending = earlier.pending
    print(
        f"run: {len(rows)} samples from {config.dataset}, mode {mode}, "
        f"scorers {','.join(config.scorers)}"
        + (f"; resuming, {len(rows) - len(pending)} already answered" if earlier.resumed else ""),
        file=out,
        flush=True,
    )
    progress = Progress(output, len(rows), config.progress_interval, out)
    predictions_journal = None
    if inference:
        predictions_journal = store.Journal(output / PREDICTIONS, earlier.predictions_intact)
    reviews_journal = store.Journal(output / REVIEWS, earlier.reviews_intact)
    senders: list[Sender] = []
    try:
        model: ModelClient | None = None
        judge: ModelClient | None = None
        if pending and config.model is not None:
            sender = await _model_sender(config, config.model, out)
            senders.append(sender)
            model = ModelClient(config.model, sender, config.retry, rng)
        if config.judge is not None:
            judge_http = transport.http_client(
                config.judge.concurrency,
                config.request_timeout,
                config.tls_verify,
                config.judge.endpoint.url,
            )
            judge_sender = HttpSender(config.judge.endpoint, judge_http, config.request_timeout)
            senders.append(judge_sender)
            judge = ModelClient(config.judge.endpoint, judge_sender, config.judge.retry, rng)
        flow = pipeline.Pipeline(
            reviewer=_reviewer(config),
            progress=progress,
            predictions=predictions_journal,
            reviews=reviews_journal,
            request_body=_body_builder(config),
            model=model,
            concurrency=config.concurrency,
            judge_client=judge,
            judge_prompt=config.judge.prompt if config.judge else "",
            judge_concurrency=config.judge.concurrency if config.judge else 1,
            record_after_sends=not isinstance(
                model.sender if model else None, http_process.ProcessSender
            ),
        )
        await flow.run(pending, earlier.known, earlier.judged)
    finally:
        for each in senders:
            await each.aclose()
        if predictions_journal is not None:
            predictions_journal.close()
        reviews_journal.close()
    progress.report()
    return _finish(config, rows, flow, mode, started)


async def _model_sender(config: Config, endpoint: Endpoint, out: TextIO) -> Sender:
    """The model's sender, once the service answers: in a second process when that pays."""
    offload = config.http_process
    if offload is None:
        offload = http_process.worth_it(config.concurrency)
    http = transport.http_client(
        config.concurrency, config.request_timeout, config.tls_verify, endpoint.url
    )
    try:
        if config.wait_for_model > 0:
            await wait_for_model(http, endpoint, config.wait_for_model, out)
    except BaseException:
        await http.close()
        raise
    if not offload:
        # Made after the wait: the service's headers go on the client here, not on the wait's.
        return HttpSender(endpoint, http, config.request_timeout)
    await http.close()  # it served the wait; the child has a client of its own
    print("run: the model's requests go from a second process (EVAL_HTTP_PROCESS)", file=out)
    return await http_process.ProcessSender.start(
        endpoint, config.concurrency, config.request_timeout, config.tls_verify
    )


def _reviewer(config: Config) -> pipeline.Reviewer:
    simple = {
        name: scorers.build(name, config.scorer_regex, config.numeric_tolerance)
        for name in config.scorers
        if name != pipeline.JUDGE
    }
    return pipeline.Reviewer(config.scorers, simple)


def _body_builder(config: Config) -> Callable[[samples.Sample], dict[str, Any]]:
    endpoint = config.model

    def build(sample: samples.Sample) -> dict[str, Any]:
        assert endpoint is not None  # only called in inference mode, which requires it
        return prompts.request_body(sample, config, endpoint)

    return build


def _finish(
    config: Config,
    rows: Sequence[samples.Sample],
    flow: pipeline.Pipeline,
    mode: str,
    started: datetime,
) -> dict[str, float]:
    output = config.output_dir
    predictions = [flow.predictions[s.id] for s in rows]
    reviews = [flow.reviews[s.id] for s in rows]
    store.write_lines(output / PREDICTIONS, predictions)
    store.write_lines(output / REVIEWS, reviews)
    values = summary.metrics(config.scorers, reviews, predictions)
    finished = datetime.now(UTC)
    store.write_json(
        output / REPORT,
        {
            "task": config.task_name,
            "model": config.model_name,
            "url": config.model.display_url if config.model else None,
            "dataset": config.dataset,
            "mode": mode,
            "scorers": list(config.scorers),
            "generation": config.generation.body(),
            "metrics": values,
            "errors": summary.top_errors(reviews),
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "duration_seconds": round((finished - started).total_seconds(), 3),
        },
    )
    if values["errors"] == len(rows):
        first = reviews[0]
        raise RunnerError(
            f"all {len(rows)} samples failed, so there is no score; sample {first['id']!r}: "
            f"{first['error']} (details in {output / REVIEWS})"
        )
    if values["errors"] > config.max_error_rate * len(rows):
        why = "; ".join(f"{e['samples']} x {e['error']}" for e in summary.top_errors(reviews)[:3])
        raise RunnerError(
            f"{values['errors']:g} of {len(rows)} samples failed after their retries "
            f"({values['errors'] / len(rows):.1%}, more than EVAL_MAX_ERROR_RATE="
            f"{config.max_error_rate:g}), so the score would count them as wrong answers: "
            f"{why} (details in {output / REVIEWS})"
        )
    document = summary.document(values)
    results.encode(results.parse(json.dumps(document)))  # the collector must accept it
    store.write_json(output / results.FILE_NAME, document)
    return values
