"""The model probe against real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from eval_operator import probe


class Refuse(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(405)  # chat endpoints refuse GET: still an answer
        self.end_headers()

    def log_message(self, *args):
        pass


def test_any_http_answer_is_reachable():
    server = HTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert probe.probe_url(f"http://127.0.0.1:{server.server_port}/v1/chat/completions") is None
    finally:
        server.shutdown()


def test_a_closed_port_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    why = probe.probe_url(f"http://127.0.0.1:{port}/v1")
    assert why is not None and "ConnectError" in why
