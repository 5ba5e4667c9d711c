"""The runner's HTTP/1.1 transport against a server that writes exact bytes.

Each test scripts the server's side of one connection at a time: what it answers (in as
many pieces as the test likes), and whether it then closes. The client is what the runner
uses, httpx.AsyncClient on http11.PoolTransport, so what is asserted is what httpx's
callers see: framing, keep-alive, errors as httpx's exceptions, timeouts, cookies.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from eval_runner import http11, transport
from eval_runner.client import HttpSender, ModelClient
from eval_runner.config import Endpoint, Retry
from eval_runner.errors import SampleError

Script = Callable[["Peer"], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a": "b"}\n'


@dataclass
class Peer:
    """The server's end of one connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    number: int  # which connection of the test, from 1

    async def request(self) -> tuple[bytes, bytes]:
        """One request: its head and its body (Content-Length or chunked)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readexactly(2)
            return head, body
        length = 0
        if b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        return head, await self.reader.readexactly(length)

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)

    def close(self) -> None:
        self.writer.close()


@dataclass
class Server:
    script: Script
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(Peer(reader, writer, self.connections))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away: what some tests do on purpose
        finally:
            writer.close()


def exchange(
    script: Script,
    client_code: Callable[[httpx.AsyncClient, str], Awaitable[object]],
    size: int = 4,
    timeout: float = 5.0,
) -> tuple[object, Server]:
    async def main() -> tuple[object, Server]:
        server = Server(script)
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            async with transport.http_client(size, timeout, True, url) as client:
                return await client_code(client, url), server
        finally:
            listener.close()

    return asyncio.run(main())


def serve_each(*replies: bytes, close: bool = False) -> Script:
    """Answer the connection's requests with `replies`, one each, in order."""

    async def script(peer: Peer) -> None:
        for reply in replies:
            await peer.request()
            await peer.send(reply)
        if close:
            peer.close()
        else:
            await peer.reader.read()  # until the client closes

    return script


def post(client: httpx.AsyncClient, url: str) -> Awaitable[httpx.Response]:
    return client.post(url, json={"messages": [{"role": "user", "content": "q"}]})


def test_a_reply_with_content_length_and_the_connection_kept_for_the_next():
    async def twice(client, url):
        return [(await post(client, url)).json() for _ in range(2)]

    answers, server = exchange(serve_each(OK, OK), twice)
    assert answers == [{"a": "b"}, {"a": "b"}]
    assert server.connections == 1


def test_a_request_is_written_as_httpx_built_it():
    seen: list[tuple[bytes, bytes]] = []

    async def script(peer):
        seen.append(await peer.request())
        await peer.send(OK)

    async def call(client, url):
        return await client.post(url + "?x=1", content=b'{"k": 1}', headers={"X-Key": "v"})

    response, _ = exchange(script, call)
    head, body = seen[0]
    assert head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in head and b"\r\nX-Key: v\r\n" in head
    assert b"\r\nContent-Length: 8\r\n" in head and body == b'{"k": 1}'
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"


def test_a_chunked_reply_in_many_pieces_with_extensions_and_trailers():
    reply = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;name=x\r\n{"a"\r\n7\r\n: "bc"}\r\n0\r\nX-Trailer: 1\r\n\r\n'
    )

    async def script(peer):
        for _ in range(2):
            await peer.request()
            await peer.send(*(reply[i : i + 3] for i in range(0, len(reply), 3)), pause=0.001)
        await peer.reader.read()

    async def twice(client, url):
        return [(await post(client, url)).json() for _ in range(2)]

    answers, server = exchange(script, twice)
    assert answers == [{"a": "bc"}, {"a": "bc"}]
    assert server.connections == 1, "a complete chunked reply leaves the connection reusable"


def test_a_reply_that_runs_until_the_connection_closes():
    reply = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"

    async def twice(client, url):
        return [(await post(client, url)).text for _ in range(2)]

    texts, server = exchange(serve_each(reply, close=True), twice)
    assert texts == ["all of it", "all of it"]
    assert server.connections == 2


def test_connection_close_is_honoured():
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def twice(client, url):
        return [(await post(client, url)).text for _ in range(2)]

    texts, server = exchange(serve_each(reply), twice)
    assert texts == ["ok", "ok"] and server.connections == 2


def test_informational_replies_are_skipped():
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK

    response, _ = exchange(serve_each(reply), post)
    assert response.status_code == 200 and response.json() == {"a": "b"}


def test_head_and_204_and_304_replies_have_no_body():
    head_reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    not_modified = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"

    async def three(client, url):
        return [
            await client.head(url),
            await client.get(url),
            await client.get(url),
            await post(client, url),
        ]

    responses, server = exchange(serve_each(head_reply, no_content, not_modified, OK), three)
    assert [r.status_code for r in responses] == [200, 204, 304, 200]
    assert [r.content for r in responses[:3]] == [b"", b"", b""]
    assert responses[3].json() == {"a": "b"} and server.connections == 1


def test_a_compressed_reply_is_decoded():
    body = gzip.compress(b'{"a": "zipped"}')
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    response, _ = exchange(serve_each(reply), post)
    assert response.json() == {"a": "zipped"}


def test_a_streaming_request_body_is_sent_chunked():
    seen: list[bytes] = []

    async def script(peer):
        seen.append((await peer.request())[1])
        await peer.send(OK)

    async def parts() -> AsyncIterator[bytes]:
        for part in (b'{"a": ', b"", b'"streamed"}'):
            yield part

    async def call(client, url):
        return await client.post(url, content=parts())

    response, _ = exchange(script, call)
    assert seen == [b'{"a": "streamed"}'] and response.status_code == 200


def test_a_cookie_the_service_sets_is_sent_back():
    set_cookie = b"HTTP/1.1 200 OK\r\nSet-Cookie: route=r1; Path=/\r\nContent-Length: 2\r\n\r\nok"
    heads: list[bytes] = []

    async def script(peer):
        for reply in (set_cookie, OK):
            heads.append((await peer.request())[0])
            await peer.send(reply)
        await peer.reader.read()

    async def twice(client, url):
        await post(client, url)
        await post(client, url)
        return dict(client.cookies)

    cookies, _ = exchange(script, twice)
    assert cookies == {"route": "r1"}
    assert b"cookie: route=r1" in heads[1].lower() and b"cookie:" not in heads[0].lower()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.1 status line: b'HTTP/2 200 OK'"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "a bad status code"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "a malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", "a bad Content-Length: b'-4'"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            "a bad Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "a bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000, "a reply head over 65536 bytes"),
    ],
    ids=[
        "another protocol",
        "a status that is not a number",
        "a header without a colon",
        "a negative length",
        "two different lengths",
        "a chunk size that is not hex",
        "an endless head",
    ],
)
def test_a_malformed_reply_is_a_protocol_error_that_says_what(reply, message):
    with pytest.raises(httpx.RemoteProtocolError, match=message.replace("[", r"\[")) as caught:
        exchange(serve_each(reply), post)
    assert caught.value.request.url.path == "/v1/chat/completions"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"", "Server disconnected without sending a response."),
        (b"HTTP/1.1 200 OK\r\nContent-Len", "the server closed the connection mid-head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection mid-body"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "mid-body"),
    ],
    ids=["nothing", "half a head", "half a body", "half a chunk"],
)
def test_a_connection_closed_before_the_reply_is_whole(reply, message):
    with pytest.raises(httpx.RemoteProtocolError, match=message):
        exchange(serve_each(reply, close=True), post)


def test_a_reply_that_does_not_come_in_time_is_a_read_timeout():
    async def silent(peer):
        await peer.request()
        await asyncio.sleep(2)

    with pytest.raises(httpx.ReadTimeout):
        exchange(silent, post, timeout=0.2)


def test_a_timed_out_connection_is_closed_not_reused():
    closed_by_client: list[bool] = []

    async def script(peer):
        await peer.request()
        if peer.number == 1:  # never answers: the client must give up on it and close it
            try:
                closed_by_client.append(await asyncio.wait_for(peer.reader.read(), 1) == b"")
            except TimeoutError:
                closed_by_client.append(False)
            return
        await peer.send(OK)
        await peer.reader.read()

    async def call(client, url):
        with pytest.raises(httpx.ReadTimeout):
            await post(client, url)
        return (await post(client, url)).json()

    answer, server = exchange(script, call, timeout=0.2)
    assert answer == {"a": "b"} and server.connections == 2
    assert closed_by_client == [True]


def test_a_connection_with_unasked_bytes_is_not_reused():
    async def script(peer):
        await peer.request()
        await peer.send(OK + b"HTTP/1.1 200 OK\r\n")  # a second reply nobody asked for
        await peer.request() if peer.number > 1 else None
        if peer.number > 1:
            await peer.send(OK)
        await peer.reader.read()

    async def twice(client, url):
        first = await post(client, url)
        await asyncio.sleep(0.05)
        return [first.json(), (await post(client, url)).json()]

    answers, server = exchange(script, twice)
    assert answers == [{"a": "b"}, {"a": "b"}] and server.connections == 2


def test_the_pool_holds_at_most_size_connections():
    in_flight = 0
    peak = 0

    async def script(peer):
        nonlocal in_flight, peak
        while True:
            await peer.request()
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            await peer.send(OK)

    async def many(client, url):
        return await asyncio.gather(*(post(client, url) for _ in range(12)))

    responses, server = exchange(script, many, size=3)
    assert len(responses) == 12 and peak == 3 and server.connections == 3


def test_waiting_for_a_connection_longer_than_the_pool_timeout():
    async def slow(peer):
        await peer.request()
        await asyncio.sleep(1)
        await peer.send(OK)

    async def two(client, url):
        first = asyncio.ensure_future(post(client, url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await client.post(url, json={}, timeout=httpx.Timeout(5, pool=0.1))
        return (await first).status_code

    status, _ = exchange(slow, two, size=1)
    assert status == 200


def test_a_header_value_with_a_line_break_is_refused_before_sending():
    async def never(peer):
        await peer.reader.read()

    async def call(client, url):
        return await client.post(url, json={}, headers={"X-Bad": "a\r\nInjected: 1"})

    with pytest.raises(httpx.LocalProtocolError, match="X-Bad"):
        exchange(never, call)


def test_an_unsupported_scheme():
    async def call(client, url):
        return await client.get("ftp://127.0.0.1/x")

    with pytest.raises(httpx.UnsupportedProtocol):
        exchange(serve_each(), call)


async def trickle(peer: Peer) -> None:
    """A head, then one body byte every 50 ms: each read is quick, the whole reply is not."""
    await peer.request()
    await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
    for _ in range(40):
        await peer.send(b"x")
        await asyncio.sleep(0.05)


def test_the_read_timeout_bounds_the_whole_reply_not_each_read():
    async def timed(client, url):
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await post(client, url)
        return asyncio.get_running_loop().time() - started

    waited, _ = exchange(trickle, timed, timeout=0.3)
    assert 0.3 <= waited < 0.3 + 2 * http11.Deadlines.TICK + 0.2


@pytest.mark.parametrize("runner_transport", [True, False], ids=["own transport", "httpx's"])
def test_eval_request_timeout_bounds_an_attempt_on_either_transport(runner_transport):
    # Behind a proxy the runner uses httpx's transport, whose read timeout is per read: the
    # model client then keeps a deadline of its own.
    async def attempt(client, url):
        http = client if runner_transport else httpx.AsyncClient(timeout=0.3)
        sender = HttpSender(Endpoint(url), http, 0.3)
        assert sender.own_deadline is not runner_transport
        model = ModelClient(Endpoint(url), sender, Retry(retries=0))
        started = asyncio.get_running_loop().time()
        with pytest.raises(SampleError, match=r"no answer within 0.3s \(EVAL_REQUEST_TIMEOUT\)"):
            await model.complete({"messages": [{"role": "user", "content": "q"}]})
        if not runner_transport:
            await http.aclose()
        return asyncio.get_running_loop().time() - started

    waited, _ = exchange(trickle, attempt, timeout=0.3)
    assert waited < 1.0, "the 2 s trickle was cut off"


def test_cookies_given_to_the_client_are_kept_and_sent():
    heads: list[bytes] = []

    async def script(peer):
        heads.append((await peer.request())[0])
        await peer.send(OK)
        await peer.reader.read()

    async def call(client, url):
        client.cookies = {"session": "s1"}
        await post(client, url)
        return dict(transport.Client(cookies={"a": "1"}).cookies)

    given, _ = exchange(script, call)
    assert given == {"a": "1"}
    assert b"cookie: session=s1" in heads[0].lower()
