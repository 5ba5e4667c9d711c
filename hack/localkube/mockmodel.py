"""The one OpenAI-compatible model service of the tests, the demo and the benchmarks.

It answers POST /v1/chat/completions (and the legacy /v1/completions) with asyncio on a
thread of its own (`with MockModel(...) as model:`), or as a process of its own for the
benchmarks (`python -m localkube.mockmodel --delay 0.05`, which prints its port). It
speaks HTTP/1.1 with keep-alive, as model servers do; GET gets a 405, which is still an
answer (the probe's). Each request is answered by `behave(key, attempt) -> Reply`, where
`key` is the sample's query (the last message's content, or the prompt) and `attempt`
counts that key's requests from 1: an answer, a status with headers, a raw body, a delay,
or a dropped connection.

- `answer_key(name, answers, accuracy)`: answers right with probability `accuracy`,
  decided by a hash of (model, question), so that results are repeatable (the demo).
- `answer_from(answers)`: every question right.
- None: the same short completion to every request, without reading it (benchmarks).

It checks the auth header, and records what it saw: the requests (`arrivals`), the most in
flight at once, the GETs' headers. GET /stats and GET /reset give and clear the counts of
a service in another process.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # the body as is, instead of a completion
    delay: float = 0.0
    drop: bool = False  # close the connection without an answer
    usage: bool = True
    message: dict[str, Any] | None = None  # the choice's message as is (tool calls, say)


class Headers(dict[str, str]):
    """A request's headers; names are looked up in any case, as HTTP has them."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


@dataclass(frozen=True)
class Arrival:
    key: str
    attempt: int
    at: float  # time.monotonic()
    body: dict[str, Any]
    headers: Headers
    client_port: int


Behave = Callable[[str, int], Reply]


def answer_from(answers: Mapping[str, str]) -> Behave:
    """A well-behaved service that knows the answer to every question."""
    return lambda key, attempt: Reply(answers.get(key, "I do not know"))


def answer_key(name: str, answers: Mapping[str, str], accuracy: float = 1.0) -> Behave:
    """Right with probability `accuracy`, the same for the same (model, question)."""

    def behave(key: str, attempt: int) -> Reply:
        right = answers.get(key.strip(), "")
        digest = hashlib.sha256(f"{name}\x00{key.strip()}".encode()).digest()
        return Reply(right if right and digest[0] / 255 < accuracy else "I am not sure.")

    return behave


def _response(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> bytes:
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
    head += "Content-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + body


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 405: "Method Not Allowed"}
# The completion a service without `behave` sends to everyone: complete, as some clients
# (the OpenAI SDK's models) validate every field.
_FIXED = _response(
    200,
    json.dumps(
        {
            "id": "mock",
            "object": "chat.completion",
            "created": 0,
            "model": "mock",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "42"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }
    ).encode(),
)


class MockModel:
    def __init__(
        self,
        behave: Behave | None = None,
        *,
        name: str = "mock",
        token: str | None = None,
        header_key: str = "Authorization",
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = 1024,
        tls: tuple[str, str] | None = None,
        idle_timeout: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """`token`: the value `header_key` must have (else a 401). `host`: where it
        listens; pods on the real node reach this machine at its node address. `tls`:
        (certificate chain file, key file): it serves https. `idle_timeout`: close a
        kept-alive connection idle this long, as model servers do. `delay`: seconds
        before every answer (a Reply's own delay comes on top)."""
        self.behave, self.name, self.token, self.header_key = behave, name, token, header_key
        self.host, self.delay, self.idle_timeout = host, delay, idle_timeout
        # No behaviour and no token: every POST gets the same completion, unread and
        # unrecorded but counted (the benchmarks' service, as fast as it can be).
        self.fixed = behave is None and token is None
        self.arrivals: list[Arrival] = []
        self.attempts: Counter[str] = Counter()
        self.gets: list[Headers] = []
        self.requests = 0  # POSTs answered or refused
        self.unauthorized = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.first = self.last = 0.0  # time.monotonic() of the first request, last answer
        self.lock = threading.Lock()  # for readers on other threads
        self.scheme = "https" if tls else "http"
        self._ssl: ssl.SSLContext | None = None
        if tls is not None:
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl.load_cert_chain(*tls)
        self._port, self._backlog = port, backlog
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._server: asyncio.Server | None = None

    @classmethod
    def answering(
        cls, name: str, answers: Mapping[str, str], accuracy: float = 1.0, **options: Any
    ) -> MockModel:
        """A model named `name` that knows `answers` with `accuracy` (answer_key)."""
        return cls(answer_key(name, answers, accuracy), name=name, **options)

    def answer(self, key: str) -> str:
        """What it answers to `key` (a pure `behave` answers the same every time)."""
        return self.behave(key, 1).text if self.behave is not None else "42"

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1/chat/completions"

    def times(self, key: str) -> list[float]:
        return [a.at for a in self.arrivals if a.key == key]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "first": self.first,
                "last": self.last,
                "inflight": self.in_flight,
                "peak": self.max_in_flight,
            }

    def reset(self) -> None:
        with self.lock:
            self.arrivals.clear()
            self.attempts.clear()
            self.requests = self.max_in_flight = 0
            self.first = self.last = 0.0

    def __enter__(self) -> MockModel:
        self._thread.start()
        self._ready.wait(10)
        if self._server is None:
            raise RuntimeError(f"the mock model could not listen on {self.host}:{self._port}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                self._loop.create_server(
                    lambda: _Connection(self),
                    self.host,
                    self._port,
                    backlog=self._backlog,
                    ssl=self._ssl,
                    reuse_address=True,
                )
            )
        except OSError:
            self._ready.set()
            raise
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    # --- answering -------------------------------------------------------------------

    async def respond(
        self, method: str, path: str, headers: Headers, body: bytes, port: int
    ) -> bytes | None:
        """The response to one request; None: drop the connection."""
        if method == "GET" and path.startswith("/stats"):
            return _response(200, json.dumps(self.stats()).encode())
        if method == "GET" and path.startswith("/reset"):
            self.reset()
            return _response(200, json.dumps(self.stats()).encode())
        if method != "POST":
            with self.lock:
                self.gets.append(headers)
            return _response(405, b'{"error": {"message": "use POST"}}')
        with self.lock:
            self.requests += 1
            self.first = self.first or time.monotonic()
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._post(headers, body, port)
        finally:
            with self.lock:
                self.in_flight -= 1
                self.last = time.monotonic()

    async def _post(self, headers: Headers, body: bytes, port: int) -> bytes | None:
        try:
            doc = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return _response(400, b'{"error": {"message": "body is not JSON"}}')
        messages = doc.get("messages")
        key = str(messages[-1].get("content", "")) if messages else str(doc.get("prompt", ""))
        with self.lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
            self.arrivals.append(Arrival(key, attempt, time.monotonic(), doc, headers, port))
        if self.token is not None and headers.get(self.header_key) != self.token:
            with self.lock:
                self.unauthorized += 1
            return _response(401, b'{"error": {"message": "invalid api key"}}')
        reply = self.behave(key, attempt) if self.behave is not None else Reply("42")
        if self.delay or reply.delay:
            await asyncio.sleep(self.delay + reply.delay)
        if reply.drop:
            return None
        if reply.raw is not None:
            return _response(reply.status, reply.raw, reply.headers)
        if reply.status != 200:
            return _response(reply.status, b'{"error": {"message": "busy"}}', reply.headers)
        if messages is not None:
            message = reply.message or {"role": "assistant", "content": reply.text}
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "message": message}
        else:
            choice = {"index": 0, "finish_reason": "stop", "text": reply.text}
        completion: dict[str, Any] = {
            "id": f"mock-{time.time_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
        }
        if reply.usage:
            words = len(reply.text.split())
            completion["usage"] = {
                "prompt_tokens": 10,
                "completion_tokens": words,
                "total_tokens": 10 + words,
            }
        return _response(200, json.dumps(completion).encode(), reply.headers)


class _Connection(asyncio.Protocol):
    """One client connection: its requests are answered in turn, as HTTP/1.1 has it."""

    def __init__(self, model: MockModel) -> None:
        self.model = model
        self.buffer = b""
        self.queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue()  # (head, body)
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.port = int(peer[1])
        self.worker = asyncio.get_running_loop().create_task(self._work())
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.cancel()
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            lower = head.lower()
            length = 0
            if (at := lower.find(b"content-length:")) >= 0:
                length = int(lower[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if self.model.fixed and lower.startswith(b"post"):
                self._fixed()  # the benchmarks' service: nothing to read, nothing to keep
            else:
                self.queue.put_nowait((head, body))

    def _fixed(self) -> None:
        model = self.model
        model.requests += 1
        model.first = model.first or time.monotonic()
        model.in_flight += 1
        model.max_in_flight = max(model.max_in_flight, model.in_flight)
        if model.delay:
            asyncio.get_running_loop().call_later(model.delay, self._send_fixed)
        else:
            self._send_fixed()

    def _send_fixed(self) -> None:
        self.model.in_flight -= 1
        if not self.transport.is_closing():
            self.transport.write(_FIXED)
            self.model.last = time.monotonic()

    async def _work(self) -> None:
        while True:
            head, body = await self.queue.get()
            lines = head.decode("latin-1").split("\r\n")
            headers = Headers()
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            method, _, rest = lines[0].partition(" ")
            path = rest.rsplit(" ", 1)[0]
            response = await self.model.respond(method, path, headers, body, self.port)
            if self.transport.is_closing():
                return
            if response is None:
                self.transport.close()
                return
            self.transport.write(response)
            if self.queue.empty():
                self._arm()

    def _arm(self) -> None:
        if self.model.idle_timeout is not None:
            loop = asyncio.get_running_loop()
            self.idle = loop.call_later(self.model.idle_timeout, self.transport.close)


def main() -> None:
    """A service in a process of its own, for the benchmarks: it prints its port."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    with MockModel(delay=args.delay, host=args.host) as model:
        print(model.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
