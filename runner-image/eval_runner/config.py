"""The runner's configuration, read once from the environment into frozen dataclasses.

The operator injects EVAL_OUTPUT_DIR, EVAL_INFERENCE_URL, the auth header, the model and
task names and the performance knobs (MAX_CONCURRENCY, MAX_RETRY_PER_QUERY); the task's
own env adds the rest (README.md lists every variable). Reading everything up front means
a typo fails the run in its first second, with the variable's name in the message, instead
of after an hour of model calls.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from eval_runner.errors import ConfigError

N = TypeVar("N", int, float)

Api = Literal["chat", "completions"]
Mode = Literal["auto", "inference", "evaluation"]

DEFAULT_OUTPUT_DIR: Final = "/opt/ml/output"
DEFAULT_CONCURRENCY: Final = 24
DEFAULT_MAX_ERROR_RATE: Final = 0.05
# The product's evaluator waits up to an hour for a model service that is still loading.
DEFAULT_WAIT_SECONDS: Final = 3600.0
SCORERS: Final = ("exact_match", "contains", "regex", "multiple_choice", "numeric", "llm_judge")
DEFAULT_JUDGE_PROMPT: Final = (
    "You are grading an answer against a reference answer.\n"
    "Question: {question}\n"
    "Reference answer: {answer}\n"
    "Answer to grade: {prediction}\n"
    "Is the answer to grade correct? Reply with one number between 0 and 1 "
    "(1: correct, 0: wrong) and nothing else."
)


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible service: where, which API, which auth header, which model id."""

    url: str
    api: Api = "chat"
    header_key: str = "Authorization"
    header_value: str | None = field(default=None, repr=False)
    model: str | None = None

    @property
    def display_url(self) -> str:
        """The URL without credentials, for messages and report.json."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Generation:
    """Sampling parameters; None means "not sent", so the service's defaults apply."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        names = ("max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed")
        doc: dict[str, Any] = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.stop is not None:
            doc["stop"] = list(self.stop)
        return {**doc, **self.extra}


@dataclass(frozen=True)
class Retry:
    retries: int = 0
    backoff_base: float = 1.0
    backoff_max: float = 60.0


@dataclass(frozen=True)
class Fields:
    """Column names of the dataset's rows."""

    id: str = "id"
    query: str = "query"
    messages: str = "messages"
    answer: str = "answer"
    prediction: str = "prediction"


@dataclass(frozen=True)
class Judge:
    endpoint: Endpoint
    prompt: str = DEFAULT_JUDGE_PROMPT
    concurrency: int = 8
    retry: Retry = Retry(retries=2)


@dataclass(frozen=True)
class Config:
    output_dir: Path
    dataset: str
    model: Endpoint | None = None
    fields: Fields = Fields()
    mode: Mode = "auto"
    limit: int | None = None
    system_prompt: str | None = None
    prompt_template: str | None = None
    generation: Generation = Generation()
    concurrency: int = DEFAULT_CONCURRENCY
    request_timeout: float = 600.0
    retry: Retry = Retry()
    wait_for_model: float = DEFAULT_WAIT_SECONDS
    scorers: tuple[str, ...] = ("exact_match",)
    scorer_regex: re.Pattern[str] | None = None
    numeric_tolerance: float = 1e-6
    judge: Judge | None = None
    tls_verify: bool | str = True
    # Failed samples (no answer after their retries) above this share fail the run: a
    # score over the rest would pass an unreliable service off as a weak model.
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    resume: bool = True
    progress_interval: float = 5.0
    http_process: bool | None = None  # None: auto (http_process.worth_it)
    model_name: str = ""
    task_name: str = ""


class _Env:
    """Typed reads of environment variables; every error names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name, "").strip()
        return value or default

    def raw(self, name: str, default: str | None = None) -> str | None:
        """As set, spaces and newlines included: they matter in prompts and stop strings."""
        return self.env.get(name) or default

    def required(self, name: str, why: str) -> str:
        value = self.text(name)
        if value is None:
            raise ConfigError(f"{name} is not set; {why}")
        return value

    def first(self, *names: str, strip: bool = True) -> tuple[str, str] | None:
        """The first of `names` that is set, with its value (EVAL_X before its alias x)."""
        for name in names:
            value = self.text(name) if strip else self.raw(name)
            if value is not None:
                return name, value
        return None

    def integer(self, *names: str, default: int | None = None, minimum: int = 0) -> int | None:
        found = self._converted(names, int, "a whole number")
        if found is None:
            return default
        name, value, number = found
        if number < minimum:
            raise ConfigError(f"{name}={value!r} must be at least {minimum}")
        return number

    def number(
        self, *names: str, default: float | None = None, minimum: float | None = None
    ) -> float | None:
        found = self._converted(names, float, "a number")
        if found is None:
            return default
        name, value, number = found
        if not math.isfinite(number) or (minimum is not None and number < minimum):
            raise ConfigError(f"{name}={value!r} must be a finite number >= {minimum}")
        return number

    def _converted(
        self, names: tuple[str, ...], convert: Callable[[str], N], what: str
    ) -> tuple[str, str, N] | None:
        """The first of `names` that is set: its name, its text and its value, or None."""
        found = self.first(*names)
        if found is None:
            return None
        name, value = found
        try:
            return name, value, convert(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not {what}") from None

    def count(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.integer(name, default=default, minimum=minimum)
        return default if value is None else value

    def seconds(self, name: str, default: float) -> float:
        value = self.number(name, default=default, minimum=0.0)
        return default if value is None else value

    def positive(self, name: str, default: float) -> float:
        value = self.seconds(name, default)
        if value <= 0:
            raise ConfigError(f"{name}={self.env.get(name)!r} must be greater than 0")
        return value


def from_env(env: Mapping[str, str]) -> Config:
    """The whole configuration, or ConfigError naming the first bad variable."""
    read = _Env(env)
    retries = read.count("MAX_RETRY_PER_QUERY", 0)
    backoff = read.positive("EVAL_RETRY_BACKOFF_SECONDS", 1.0)
    backoff_max = read.positive("EVAL_RETRY_BACKOFF_MAX_SECONDS", 60.0)
    scorers = _scorers(read)
    regex = _regex(read) if "regex" in scorers else None
    url = read.text("EVAL_INFERENCE_URL")
    model = None
    if url is not None:
        model = Endpoint(
            url=_url(url, "EVAL_INFERENCE_URL"),
            api=_api(read, url),
            header_key=read.text("EVAL_AUTHORIZATION_HEADER_KEY", "Authorization") or "",
            header_value=read.text("EVAL_AUTHORIZATION_HEADER_VALUE"),
            model=read.text("EVAL_SERVED_MODEL_NAME", read.text("EVAL_MODEL_NAME")),
        )
    mode = read.text("EVAL_MODE", "auto")
    if mode not in ("auto", "inference", "evaluation"):
        raise ConfigError(f"EVAL_MODE={mode!r} must be auto, inference or evaluation")
    return Config(
        output_dir=Path(read.text("EVAL_OUTPUT_DIR", DEFAULT_OUTPUT_DIR) or DEFAULT_OUTPUT_DIR),
        dataset=read.required(
            "EVAL_DATASET", "set it to a JSONL file's path or builtin:<name> (README.md)"
        ),
        model=model,
        fields=Fields(
            id=read.text("EVAL_ID_FIELD", "id") or "id",
            query=read.text("EVAL_QUERY_FIELD", "query") or "query",
            messages=read.text("EVAL_MESSAGES_FIELD", "messages") or "messages",
            answer=read.text("EVAL_ANSWER_FIELD", "answer") or "answer",
            prediction=read.text("EVAL_PREDICTION_FIELD", "prediction") or "prediction",
        ),
        mode=mode,  # type: ignore[arg-type]  # checked above
        limit=read.integer("EVAL_LIMIT", minimum=1),
        system_prompt=read.raw("EVAL_SYSTEM_PROMPT"),
        prompt_template=_template(read),
        generation=_generation(read),
        concurrency=read.count("MAX_CONCURRENCY", DEFAULT_CONCURRENCY, minimum=1),
        request_timeout=read.positive("EVAL_REQUEST_TIMEOUT", 600.0),
        retry=Retry(retries, backoff, backoff_max),
        wait_for_model=read.seconds("EVAL_WAIT_FOR_MODEL_SECONDS", DEFAULT_WAIT_SECONDS),
        scorers=scorers,
        scorer_regex=regex,
        numeric_tolerance=read.seconds("EVAL_NUMERIC_TOLERANCE", 1e-6),
        judge=_judge(read, backoff, backoff_max) if "llm_judge" in scorers else None,
        tls_verify=_tls_verify(read),
        max_error_rate=_fraction(read, "EVAL_MAX_ERROR_RATE", DEFAULT_MAX_ERROR_RATE),
        resume=_flag(read, "EVAL_RESUME", True),
        progress_interval=read.positive("EVAL_PROGRESS_INTERVAL_SECONDS", 5.0),
        http_process=_auto_flag(read, "EVAL_HTTP_PROCESS"),
        model_name=read.text("EVAL_MODEL_NAME", "") or "",
        task_name=read.text("EVAL_TASK_NAME", "") or "",
    )


def _url(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={url!r} is not an http(s) URL")
    return url


def _api(read: _Env, url: str) -> Api:
    """EVAL_API, else the URL's path: .../completions without /chat is the legacy API."""
    api = read.text("EVAL_API")
    if api is None:
        path = urlsplit(url).path.rstrip("/")
        legacy = path.endswith("/completions") and not path.endswith("/chat/completions")
        return "completions" if legacy else "chat"
    if api not in ("chat", "completions"):
        raise ConfigError(f"EVAL_API={api!r} must be chat or completions")
    return api  # type: ignore[return-value]  # checked above


def _scorers(read: _Env) -> tuple[str, ...]:
    text = read.text("EVAL_SCORER", "exact_match") or ""
    names = [n.strip().lower().replace("-", "_") for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCORERS]
    if unknown or not names:
        raise ConfigError(
            f"EVAL_SCORER={text!r}: unknown scorer {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(SCORERS)}"
        )
    return tuple(dict.fromkeys(names))


def _regex(read: _Env) -> re.Pattern[str]:
    pattern = read.required("EVAL_SCORER_REGEX", "the regex scorer needs a pattern")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"EVAL_SCORER_REGEX={pattern!r} is not a valid pattern: {e}") from None


def _template(read: _Env) -> str | None:
    template = read.raw("EVAL_PROMPT_TEMPLATE")
    if template is not None and "{query}" not in template:
        raise ConfigError(f"EVAL_PROMPT_TEMPLATE={template!r} must contain {{query}}")
    return template


def _generation(read: _Env) -> Generation:
    """EVAL_<NAME> first, then the lower-case <name> that spec.parameters may set."""
    extra_text = read.text("EVAL_EXTRA_BODY")
    extra: dict[str, Any] = {}
    if extra_text is not None:
        try:
            extra = json.loads(extra_text)
        except json.JSONDecodeError:
            extra = None  # type: ignore[assignment]  # reported just below
        if not isinstance(extra, dict):
            raise ConfigError(f"EVAL_EXTRA_BODY={extra_text!r} must be a JSON object")
    return Generation(
        max_tokens=read.integer("EVAL_MAX_TOKENS", "max_tokens", minimum=1),
        temperature=read.number("EVAL_TEMPERATURE", "temperature", minimum=0.0),
        top_p=read.number("EVAL_TOP_P", "top_p", minimum=0.0),
        top_k=read.integer("EVAL_TOP_K", "top_k", minimum=-1),
        repetition_penalty=read.number("EVAL_REPETITION_PENALTY", "repetition_penalty"),
        stop=_stop(read),
        seed=read.integer("EVAL_SEED", "seed", minimum=-(2**63)),
        extra=extra,
    )


def _stop(read: _Env) -> tuple[str, ...] | None:
    """A JSON list of strings, or one literal stop string."""
    found = read.first("EVAL_STOP", "stop", strip=False)
    if found is None:
        return None
    name, value = found
    if not value.lstrip().startswith("["):
        return (value,)
    try:
        items = json.loads(value)
    except json.JSONDecodeError:
        items = None
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ConfigError(f"{name}={value!r} must be a JSON list of strings or one string")
    return tuple(items)


def _judge(read: _Env, backoff: float, backoff_max: float) -> Judge:
    url = read.required("EVAL_JUDGE_URL", "the llm_judge scorer needs a judge model service")
    prompt = read.raw("EVAL_JUDGE_PROMPT", DEFAULT_JUDGE_PROMPT) or DEFAULT_JUDGE_PROMPT
    if "{prediction}" not in prompt:
        raise ConfigError("EVAL_JUDGE_PROMPT must contain {prediction}, the answer to grade")
    return Judge(
        endpoint=Endpoint(
            url=_url(url, "EVAL_JUDGE_URL"),
            api="chat",
            header_key=read.text("EVAL_JUDGE_AUTHORIZATION_HEADER_KEY", "Authorization") or "",
            header_value=read.text("EVAL_JUDGE_AUTHORIZATION_HEADER_VALUE"),
            model=read.text("EVAL_JUDGE_MODEL"),
        ),
        prompt=prompt,
        concurrency=read.count("EVAL_JUDGE_CONCURRENCY", 8, minimum=1),
        retry=Retry(read.count("EVAL_JUDGE_RETRIES", 2), backoff, backoff_max),
    )


_YES: Final = ("true", "1", "yes")
_NO: Final = ("false", "0", "no")


def _flag(read: _Env, name: str, default: bool) -> bool:
    value = (read.text(name) or str(default)).lower()
    if value not in _YES + _NO:
        raise ConfigError(f"{name}={value!r} must be true or false")
    return value in _YES


def _auto_flag(read: _Env, name: str) -> bool | None:
    """auto (None), true or false."""
    value = (read.text(name) or "auto").lower()
    if value == "auto":
        return None
    if value not in _YES + _NO:
        raise ConfigError(f"{name}={value!r} must be auto, true or false")
    return value in _YES


def _fraction(read: _Env, name: str, default: float) -> float:
    value = read.number(name, default=default, minimum=0.0)
    assert value is not None
    if value > 1:
        raise ConfigError(f"{name}={value:g} must be a fraction from 0 to 1")
    return value


def _tls_verify(read: _Env) -> bool | str:
    name, value = "EVAL_TLS_VERIFY", read.text("EVAL_TLS_VERIFY")
    if value is None and read.text("EVAL_CA_BUNDLE"):
        # The model's tls.caConfigMap, mounted by the operator.
        name, value = "EVAL_CA_BUNDLE", read.text("EVAL_CA_BUNDLE")
    value = value or "true"
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    if not Path(value).is_file():
        raise ConfigError(f"{name}={value!r}: no such CA bundle file")
    return value
