"""Calls to an OpenAI-compatible service: one request body in, one Completion out.

Two layers. A Sender makes one attempt and says what came back: a Reply (status, body),
Transient (no answer: a timeout or a broken connection) or SampleError (a request that can
never succeed). HttpSender does that over an aiohttp.ClientSession in this process;
http_process.ProcessSender hands the same work to a second process. ModelClient holds the
retry policy on top of either: timeouts, connection errors, 429 and 5xx are retried up to
`retries` times with full-jitter backoff (or the server's Retry-After); any other answer
is final. A request that still fails raises SampleError, whose message is what the user
reads in reviews.jsonl and report.json, so it says what happened in plain words and never
contains the auth header's value. Every aiohttp exception stops at HttpSender.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from eval_runner import backoff
from eval_runner.config import Endpoint, Retry
from eval_runner.errors import SampleError

_SNIPPET: Final = 200  # characters of a bad reply quoted in an error
_BODY: Final = json.JSONEncoder(ensure_ascii=False)  # one encoder for every request


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    latency: float  # seconds, of the attempt that succeeded
    attempts: int
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """What one attempt brought back."""

    status: int
    content: bytes
    retry_after: str | None = None  # the header; read only for 429 and 5xx


class Transient(Exception):
    """No answer this time (timeout, connection error): worth another attempt."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay  # the server's Retry-After, when it gave one


class Sender(Protocol):
    async def send(self, content: bytes) -> Reply: ...

    async def aclose(self) -> None: ...


class HttpSender:
    """One attempt over one pooled aiohttp.ClientSession (its own: the service's headers go
    on it): a Reply, Transient or SampleError, never an aiohttp exception."""

    def __init__(self, endpoint: Endpoint, http: aiohttp.ClientSession, timeout: float) -> None:
        self.http = http
        self.timeout = timeout  # the session's own: it bounds the whole exchange
        self.url = URL(endpoint.url)  # parsed once, not per request
        http.headers["Content-Type"] = "application/json"
        if endpoint.header_value is not None:
            http.headers[endpoint.header_key] = endpoint.header_value

    async def send(self, content: bytes) -> Reply:
        try:
            async with self.http.post(self.url, data=content, allow_redirects=False) as response:
                body = await response.read()
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            raise Transient(f"no answer within {self.timeout:g}s (EVAL_REQUEST_TIMEOUT)") from None
        except aiohttp.ClientPayloadError as e:
            if isinstance(e.__cause__, ContentEncodingError):  # the same bytes every time
                raise SampleError(f"the reply's body cannot be decoded: {e}") from None
            raise Transient(f"the connection broke: {e}") from None
        except aiohttp.ClientError as e:
            raise Transient(_transport_reason(e)) from None
        status = response.status
        retry_after = None
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After")
        return Reply(status, body, retry_after)

    async def aclose(self) -> None:
        await self.http.close()


class ModelClient:
    """One service, one Sender, one retry policy."""

    def __init__(
        self,
        endpoint: Endpoint,
        sender: Sender,
        retry: Retry,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.sender = sender
        self.retry = retry
        self.rng = rng or random.Random()
        self.wall_clock = wall_clock

    async def complete(self, body: dict[str, Any]) -> Completion:
        content = _BODY.encode(body).encode("utf-8")
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self._attempt(content, attempts)
            except Transient as e:
                if attempts > self.retry.retries:
                    raise SampleError(self._final(str(e), attempts), attempts) from None
                delay = e.delay
                if delay is None:
                    delay = backoff.full_jitter(
                        attempts - 1, self.retry.backoff_base, self.retry.backoff_max, self.rng
                    )
                await asyncio.sleep(delay)
            except SampleError as e:
                raise SampleError(self._final(str(e), attempts), attempts) from None

    async def _attempt(self, content: bytes, attempts: int) -> Completion:
        started = time.monotonic()
        reply = await self.sender.send(content)
        latency = time.monotonic() - started
        status = reply.status
        if status == 429 or status >= 500:
            delay = backoff.retry_after(reply.retry_after, self.wall_clock())
            raise Transient(f"HTTP {status}: {_snippet(reply.content)}", delay)
        if status != 200:
            hint = ""
            if status in (401, 403):
                hint = " (check EVAL_AUTHORIZATION_HEADER_KEY and EVAL_AUTHORIZATION_HEADER_VALUE)"
            raise SampleError(f"HTTP {status}: {_snippet(reply.content)}{hint}")
        text, prompt_tokens, completion_tokens = parse_reply(reply.content, self.endpoint.api)
        return Completion(text, latency, attempts, prompt_tokens, completion_tokens)

    def _final(self, reason: str, attempts: int) -> str:
        if attempts > 1:
            reason = f"{reason} (after {attempts} attempts)"
        secret = self.endpoint.header_value
        return reason.replace(secret, "***") if secret else reason


def parse_reply(content: bytes, api: str) -> tuple[str, int | None, int | None]:
    """(text, prompt tokens, completion tokens) of a 200 reply; SampleError if malformed."""
    try:
        doc = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SampleError(f"the reply is not JSON: {_snippet(content)}") from None
    try:
        choice = doc["choices"][0]
        text = choice["message"]["content"] if api == "chat" else choice["text"]
    except (KeyError, IndexError, TypeError):
        path = "choices[0].message.content" if api == "chat" else "choices[0].text"
        raise SampleError(f"the reply has no {path}: {_snippet(content)}") from None
    if text is None:
        text = ""  # a reply that is all tool calls or refusal has no content
    if not isinstance(text, str):
        raise SampleError(f"the reply's text is a {type(text).__name__}: {_snippet(content)}")
    usage = doc.get("usage") if isinstance(doc, dict) else None
    if not isinstance(usage, dict):
        return text, None, None
    return text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _transport_reason(error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {error}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the connection broke: closed without a response"
    return f"{type(error).__name__}: {error or 'no detail'}"


def _snippet(content: str | bytes) -> str:
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    text = " ".join(text.split()) or "(empty body)"
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."
