"""A small OpenAI-compatible model service on 127.0.0.1, for tests and the demo.

It answers /v1/chat/completions (and the legacy /v1/completions) from an answer key:
each question is answered right with the model's `accuracy`, decided by a hash of
(model, question) so results are repeatable. It checks the auth header, counts requests
and records when each one arrived, so tests can assert what the evaluation did.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        backlog: int | None,
    ) -> None:
        if backlog is not None:
            self.request_queue_size = backlog  # read by listen() in server_activate
        super().__init__(address, handler)


class MockModel:
    def __init__(
        self,
        name: str,
        answers: Mapping[str, str],
        accuracy: float = 1.0,
        header_key: str = "Authorization",
        header_value: str | None = None,
        port: int = 0,
        backlog: int | None = None,
        host: str = "127.0.0.1",
        tls: tuple[str, str] | None = None,
    ) -> None:
        """`backlog`: the listen queue; the standard library's 5 resets connections when
        more clients than that connect at once (the runner opens MAX_CONCURRENCY).
        `host`: where it listens; pods on the real node reach the host at its node address.
        `tls`: (certificate chain file, key file): it serves https."""
        self.host = host
        self.name = name
        self.answers = dict(answers)
        self.accuracy = accuracy
        self.header_key = header_key
        self.header_value = header_value
        self.requests = 0
        self.unauthorized = 0
        self.lock = threading.Lock()
        self._server = _Server((host, port), self._handler(), backlog)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self._server.server_port}/v1/chat/completions"

    def __enter__(self) -> MockModel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, question: str) -> str:
        right = self.answers.get(question.strip(), "")
        digest = hashlib.sha256(f"{self.name}\x00{question.strip()}".encode()).digest()
        if right and digest[0] / 255 < self.accuracy:
            return right
        return "I am not sure."

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with model.lock:
                    model.requests += 1
                if model.header_value is not None and (
                    self.headers.get(model.header_key) != model.header_value
                ):
                    with model.lock:
                        model.unauthorized += 1
                    self._reply(401, {"error": {"message": "invalid auth header"}})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._reply(400, {"error": {"message": "body is not JSON"}})
                    return
                if self.path.endswith("/chat/completions"):
                    messages = body.get("messages") or [{}]
                    text = model.answer(str(messages[-1].get("content", "")))
                    choice: dict[str, Any] = {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                else:
                    text = model.answer(str(body.get("prompt", "")))
                    choice = {"index": 0, "finish_reason": "stop", "text": text}
                self._reply(
                    200,
                    {
                        "id": f"mock-{time.time_ns()}",
                        "object": "chat.completion",
                        "model": model.name,
                        "choices": [choice],
                        "usage": {
                            "prompt_tokens": 10,
                            "completion_tokens": len(text.split()),
                            "total_tokens": 10 + len(text.split()),
                        },
                    },
                )

            def do_GET(self) -> None:
                self._reply(405, {"error": {"message": "use POST"}})

            def _reply(self, code: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
