"""HTTP/1.1 for the runner's client: a keep-alive connection pool beneath httpx.

The runner sends small JSON requests and reads small JSON replies, thousands a second at
high concurrency. httpx's default transport spends most of a request's CPU in httpcore's
pool and h11's general state machine (benchmarks/runner_vs_peers.py); this transport does
only what an OpenAI-compatible service needs: one request at a time per connection, the
request written in one piece, the reply parsed from the bytes as they arrive (asyncio
Protocol callbacks, no stream layers) and handed to httpx whole. Idle connections wait in
a deque per origin; a semaphore bounds the connections in use. Errors are httpx's own
exceptions, so callers see exactly what httpx's transport would raise.

Replies are framed by Content-Length, chunked encoding, or the connection's close;
informational (1xx) replies are skipped (but 101: the runner never asks to upgrade).
Bodies are read into memory: a streaming caller gets its bytes only once the reply is
complete.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import httpx

KEEPALIVE_SECONDS: Final = 5.0  # an idle connection older than this is closed, not reused
MAX_HEAD: Final = 64 * 1024  # bytes of status line and headers a reply may have

_Origin = tuple[bytes, bytes, int]  # scheme, host, port
_NO_REQUEST: Final = httpx.Request("GET", "http://localhost/")  # before the first exchange
_Timeout = type[httpx.TimeoutException]


@dataclass
class Reply:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


class _Malformed(Exception):
    """A reply that breaks HTTP/1.1's grammar; the caller sees RemoteProtocolError."""


class _Head:
    """A parsed status line and headers, and how the body that follows is framed."""

    __slots__ = ("chunked", "end", "headers", "keep_alive", "length", "reason", "status")

    def __init__(self, head: bytes, end: int, no_body: bool) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise _Malformed(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        try:
            self.status = int(status_line[1])
        except ValueError:
            raise _Malformed(f"a bad status code: {lines[0][:80]!r}") from None
        self.reason = status_line[2] if len(status_line) > 2 else b""
        self.end = end
        self.headers: list[tuple[bytes, bytes]] = []
        self.length: int | None = None
        self.chunked = False
        self.keep_alive = status_line[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1:] in b" \t":
                raise _Malformed(f"a malformed header line: {line[:80]!r}")
            value = value.strip()
            self.headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (self.length is not None and self.length != int(value)):
                    raise _Malformed(f"a bad Content-Length: {value[:40]!r}")
                self.length = int(value)
            elif lower == b"transfer-encoding":
                self.chunked = value.lower().endswith(b"chunked")
            elif lower == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    self.keep_alive = False
                elif b"keep-alive" in tokens:
                    self.keep_alive = True
        if no_body or self.status in (204, 304):
            self.length, self.chunked = 0, False
        elif self.chunked:
            self.length = None  # Transfer-Encoding wins over Content-Length (RFC 9112 6.3)
        elif self.length is None:
            self.keep_alive = False  # the body runs until the server closes the connection


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: write a request, wait for its complete reply."""

    def __init__(self, deadlines: Deadlines) -> None:
        self.transport: asyncio.Transport | None = None
        self.deadlines = deadlines
        self.buffer = bytearray()
        self.closed = False
        self.idle_since = time.monotonic()
        self._error: BaseException | None = None
        self._request = _NO_REQUEST
        self._waiter: asyncio.Future[Reply] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._head: _Head | None = None
        self._no_body = False
        self._chunks: list[bytes] = []
        self._scan = 0  # where the chunked body's next chunk starts in the buffer

    # --- asyncio callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self._waiter is not None:
            self._advance(eof=False)

    def eof_received(self) -> bool:
        self.closed = True
        if self._waiter is not None:
            self._advance(eof=True)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None:
            self._error = exc
        if self._waiter is not None:
            self._advance(eof=True)
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    # --- the exchange ---

    def reusable(self, now: float) -> bool:
        """Idle, open, quiet (nothing unasked-for arrived) and not past its keep-alive."""
        return not self.closed and not self.buffer and now - self.idle_since < KEEPALIVE_SECONDS

    async def exchange(
        self,
        request: httpx.Request,
        head: bytes,
        body: bytes | None,
        read_timeout: float | None,
        write_timeout: float | None,
    ) -> Reply:
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise httpx.WriteError("the connection is closed", request=request)
        self._request = request
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._head, self._no_body, self._chunks, self._scan = None, request.method == "HEAD", [], 0
        try:
            # A reply (or the connection's loss) that comes while the request is still being
            # written settles the waiter at once; the writes then stop waiting for drains.
            if body is not None:
                self.transport.write(head + body)
                await self._drained(write_timeout)
            else:
                self.transport.write(head)
                await self._drained(write_timeout)
                await self._write_stream(write_timeout)
            reply: Reply = await self.deadlines.wait(
                waiter, read_timeout, httpx.ReadTimeout, request
            )
            return reply
        finally:
            self._waiter = None

    async def _write_stream(self, timeout: float | None) -> None:
        request = self._request
        assert self.transport is not None and isinstance(request.stream, httpx.AsyncByteStream)
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        async for part in request.stream:
            if self.closed:
                return  # the waiter holds the error (or the early reply)
            if part:
                self.transport.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
                await self._drained(timeout)
        if chunked and not self.closed:
            self.transport.write(b"0\r\n\r\n")
            await self._drained(timeout)

    async def _drained(self, timeout: float | None) -> None:
        if self._writable is not None:  # the send buffer is full: wait for it to drain
            await self.deadlines.wait(self._writable, timeout, httpx.WriteTimeout, self._request)

    def _advance(self, eof: bool) -> None:
        """Parse what has arrived; finish the waiting exchange once its reply is whole."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            reply = self._parse(eof)
        except _Malformed as e:
            self.closed = True
            waiter.set_exception(httpx.RemoteProtocolError(str(e), request=self._request))
            return
        except httpx.TransportError as e:
            self.closed = True
            waiter.set_exception(e)
            return
        if reply is not None:
            waiter.set_result(reply)

    def _parse(self, eof: bool) -> Reply | None:
        buffer = self.buffer
        while self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise _Malformed(f"a reply head over {MAX_HEAD} bytes")
                if eof:
                    raise self._broken("without sending a response" if not buffer else "mid-head")
                return None
            head = _Head(bytes(buffer[:end]), end + 4, self._no_body)
            if 100 <= head.status < 200 and head.status != 101:  # the real reply follows
                del buffer[: head.end]
                continue
            self._head = head
            self._scan = head.end
        head = self._head
        if head.chunked:
            return self._parse_chunked(head, eof)
        if head.length is None:  # until the server closes the connection
            if not eof:
                return None
            body = bytes(buffer[head.end :])
            buffer.clear()
            return Reply(head.status, head.reason, head.headers, body, False)
        stop = head.end + head.length
        if len(buffer) < stop:
            if eof:
                raise self._broken("mid-body")
            return None
        body = bytes(buffer[head.end : stop])
        del buffer[:stop]
        return Reply(head.status, head.reason, head.headers, body, head.keep_alive)

    def _parse_chunked(self, head: _Head, eof: bool) -> Reply | None:
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n", self._scan)
            if line_end < 0:
                break
            size_text = bytes(buffer[self._scan : line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Malformed(f"a bad chunk size: {size_text[:20]!r}") from None
            if size == 0:  # the last chunk, then optional trailers, then a blank line
                trailers_end = buffer.find(b"\r\n\r\n", line_end)  # line_end itself: none
                if trailers_end < 0:
                    break
                del buffer[: trailers_end + 4]
                body = b"".join(self._chunks)
                return Reply(head.status, head.reason, head.headers, body, head.keep_alive)
            start, stop = line_end + 2, line_end + 2 + size
            if len(buffer) < stop + 2:
                break
            if buffer[stop : stop + 2] != b"\r\n":
                raise _Malformed("a chunk not followed by CRLF")
            self._chunks.append(bytes(buffer[start:stop]))
            self._scan = stop + 2
        if eof:
            raise self._broken("mid-body")
        return None

    def _broken(self, where: str) -> httpx.TransportError:
        request = self._request
        if self._error is not None:
            return httpx.ReadError(str(self._error) or type(self._error).__name__, request=request)
        if where == "without sending a response":
            message = "Server disconnected without sending a response."  # httpcore's words
            return httpx.RemoteProtocolError(message, request=request)
        return httpx.RemoteProtocolError(
            f"the server closed the connection {where}", request=request
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class PoolTransport(httpx.AsyncBaseTransport):
    """At most `size` connections in use at once; idle ones kept per origin for reuse."""

    def __init__(self, size: int, context: ssl.SSLContext) -> None:
        self._slots = asyncio.Semaphore(size)
        self._idle: dict[_Origin, deque[Connection]] = {}
        self._open: set[Connection] = set()
        self._ssl = context
        self._deadlines = Deadlines()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"cannot send to a {scheme.decode()}:// URL")
        origin = (scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))
        head = _request_head(request)
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None  # a streaming body: written as it is produced
        await self._acquire(timeouts.get("pool"), request)
        try:
            connection = self._take_idle(origin) or await self._connect(
                origin, timeouts.get("connect"), request
            )
            try:
                reply = await connection.exchange(
                    request, head, body, timeouts.get("read"), timeouts.get("write")
                )
            except BaseException:  # an error or a cancellation: the connection's state is unknown
                self._drop(connection)
                raise
            if reply.keep_alive and not connection.closed:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(origin, deque()).append(connection)
            else:
                self._drop(connection)
        finally:
            self._slots.release()
        response = httpx.Response(
            status_code=reply.status,
            headers=reply.headers,
            stream=httpx.ByteStream(reply.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reply.reason},
        )
        # Read (and decoded) here, synchronously: httpx's async read of a body goes through
        # five async generators, each registered with the event loop, a tenth of what the
        # client costs per request. As with httpx's MockTransport, `elapsed` stays unset.
        response.read()
        return response

    async def _acquire(self, timeout: float | None, request: httpx.Request) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time", request=request) from None

    def _take_idle(self, origin: _Origin) -> Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used is the least likely to be stale
            if connection.reusable(now):
                return connection
            self._drop(connection)
        return None

    async def _connect(
        self, origin: _Origin, timeout: float | None, request: httpx.Request
    ) -> Connection:
        scheme, host, port = origin
        name = host.decode("ascii")
        loop = asyncio.get_running_loop()
        tls = self._ssl if scheme == b"https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(self._deadlines),
                    name,
                    port,
                    ssl=tls,
                    server_hostname=name if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connecting to {name}:{port} timed out", request=request
            ) from None
        except OSError as e:  # ssl.SSLError included; waiting.py looks for it in the cause
            raise httpx.ConnectError(str(e) or type(e).__name__, request=request) from e
        self._open.add(connection)
        return connection

    def _drop(self, connection: Connection) -> None:
        self._open.discard(connection)
        connection.close()

    async def aclose(self) -> None:
        connections, self._open = self._open, set()
        self._idle.clear()
        for connection in connections:
            connection.close()


def _request_head(request: httpx.Request) -> bytes:
    raw = request.headers.raw
    fields = b"\r\n".join([b"%b: %b" % field for field in raw])
    # httpx lets a value hold CR or LF; on the wire that would split the header. Counted in
    # one pass over the joined bytes, the common case costs next to nothing.
    if fields.count(b"\n") >= len(raw) or fields.count(b"\r") >= len(raw):
        for name, value in raw:
            if b"\r" in name + value or b"\n" in name + value:
                raise httpx.LocalProtocolError(f"the header {name.decode()!r} holds a line break")
    start = b"%b %b HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)
    return start + fields + b"\r\n\r\n"


class Deadlines:
    """The timeouts of every waiting exchange, checked by one timer every TICK seconds.

    A timer per request costs the event loop a heap push and a cancel each time (Python
    comparisons, a tenth of a request at 128 in flight); one sweep of the waiting ones,
    ten times a second, costs nothing like it. A timeout fires up to TICK late.
    """

    TICK: Final = 0.1

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Future[Any], tuple[float, _Timeout, httpx.Request]] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def wait(
        self,
        future: asyncio.Future[Any],
        timeout: float | None,
        error: _Timeout,
        request: httpx.Request,
    ) -> Any:
        """Await `future`; fail it with `error` once `timeout` seconds have passed."""
        if timeout is None:
            return await future
        loop = asyncio.get_running_loop()
        self._waiting[future] = (loop.time() + timeout, error, request)
        if self._timer is None:
            self._timer = loop.call_later(self.TICK, self._sweep)
        try:
            return await future
        finally:
            self._waiting.pop(future, None)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for future, (deadline, error, request) in list(self._waiting.items()):
            if deadline <= now:
                del self._waiting[future]
                if not future.done():
                    future.set_exception(error("timed out", request=request))
        self._timer = loop.call_later(self.TICK, self._sweep) if self._waiting else None
