"""A model service on 127.0.0.1 that misbehaves on purpose, and records what it saw.

Each request is answered by a `behave(key, attempt)` function, where `key` is the sample's
query (the last message's content, or the prompt) and `attempt` counts that key's requests
from 1. It returns a Reply: an answer, a status with headers, garbage, a delay, or a dropped
connection. The server speaks HTTP/1.1 with keep-alive, as model servers do, and counts
the requests in flight, so tests can assert the runner's concurrency limit.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _self_signed() -> Path:
    """A fresh self-signed certificate for 127.0.0.1, made per test session: no key is kept
    in the repository."""
    folder = Path(tempfile.mkdtemp(prefix="runner-tls-"))
    atexit.register(shutil.rmtree, folder, True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3650",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return folder


TLS_DIR = _self_signed()


@dataclass(frozen=True)
class Reply:
    text: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # the body as is, instead of a completion
    delay: float = 0.0
    drop: bool = False  # close the connection without an answer
    usage: bool = True


@dataclass(frozen=True)
class Arrival:
    key: str
    attempt: int
    at: float  # time.monotonic()
    body: dict[str, Any]
    headers: dict[str, str]
    client_port: int


def answer_from(answers: dict[str, str]) -> Callable[[str, int], Reply]:
    """A well-behaved service that knows the answer to every question."""
    return lambda key, attempt: Reply(answers.get(key, "I do not know"))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


class FlakyModel:
    def __init__(
        self,
        behave: Callable[[str, int], Reply],
        token: str | None = None,
        port: int = 0,
        tls: bool = False,
        idle_timeout: float | None = None,
    ) -> None:
        """`tls`: serve https with TLS_DIR/cert.pem; `idle_timeout`: close a kept-alive
        connection that has been idle this long, as model servers do."""
        self.behave = behave
        self.token = token
        self.arrivals: list[Arrival] = []
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.unauthorized = 0
        self.lock = threading.Lock()
        self.tls = tls
        self.server = Server(("127.0.0.1", port), self._handler(idle_timeout))
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(TLS_DIR / "cert.pem", TLS_DIR / "key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1/chat/completions"

    def __enter__(self) -> FlakyModel:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def times(self, key: str) -> list[float]:
        return [a.at for a in self.arrivals if a.key == key]

    def _handler(self, idle_timeout: float | None) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without this, Nagle's algorithm and
            # the client's delayed ACK add 40 ms to every reply on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                self._send(405, b'{"error": "use POST"}', {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                with model.lock:
                    model.attempts[key] += 1
                    attempt = model.attempts[key]
                    model.arrivals.append(
                        Arrival(
                            key,
                            attempt,
                            time.monotonic(),
                            body,
                            dict(self.headers),
                            self.client_address[1],
                        )
                    )
                    model.in_flight += 1
                    model.max_in_flight = max(model.max_in_flight, model.in_flight)
                try:
                    self._answer(key, attempt, body)
                finally:
                    with model.lock:
                        model.in_flight -= 1

            def _answer(self, key: str, attempt: int, body: dict[str, Any]) -> None:
                if model.token is not None and self.headers.get("Authorization") != model.token:
                    with model.lock:
                        model.unauthorized += 1
                    self._send(401, b'{"error": {"message": "invalid api key"}}', {})
                    return
                reply = model.behave(key, attempt)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if reply.raw is not None:
                    self._send(reply.status, reply.raw, reply.headers)
                    return
                if reply.status != 200:
                    self._send(reply.status, b'{"error": {"message": "busy"}}', reply.headers)
                    return
                if "messages" in body:
                    choice: dict[str, Any] = {
                        "message": {"role": "assistant", "content": reply.text}
                    }
                else:
                    choice = {"text": reply.text}
                doc: dict[str, Any] = {"choices": [{"index": 0, **choice}]}
                if reply.usage:
                    doc["usage"] = {"prompt_tokens": 3, "completion_tokens": 2}
                self._send(200, json.dumps(doc).encode(), reply.headers)

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
