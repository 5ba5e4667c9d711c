"""The pooled HTTP client of a run: one httpx.AsyncClient per service, on a lean pool.

Why not httpx's default transport: its connection pool (httpcore 1.0) re-scans every
connection for every queued request, and probes each idle socket on every request, so
its cost per request grows with the square of the pool size. Measured with
benchmarks/runner_throughput.py against a service answering in 50 ms, 128 connections
gave 119 requests/s where 2560 were possible. This pool keeps idle connections in a
deque per origin and a semaphore for the limit: constant work per request, whatever the
size. Each connection is still httpcore's own HTTP/1.1 connection (h11), on the asyncio
streams of netstream.py, so the wire protocol is httpx's, and so are the exceptions
callers see.

Proxies: when the environment names a proxy for the service (HTTP_PROXY, HTTPS_PROXY,
ALL_PROXY, minus NO_PROXY), httpx's own transport is used, which knows how to tunnel.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator
from typing import Final, NoReturn

import httpcore
import httpx

from eval_runner import netstream

KEEPALIVE_SECONDS: Final = 5.0

# httpcore's exceptions as httpx's, most specific first (httpx does the same, privately).
_EXCEPTIONS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
)


def http_client(size: int, timeout: float, verify: bool | str, url: str) -> httpx.AsyncClient:
    """The client for the service at `url`, holding at most `size` connections."""
    timeouts = httpx.Timeout(timeout)
    context = ssl_context(verify)
    if uses_proxy(url):
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        return httpx.AsyncClient(limits=limits, timeout=timeouts, verify=context)
    return httpx.AsyncClient(transport=PoolTransport(size, context), timeout=timeouts)


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """EVAL_TLS_VERIFY: the system's CAs (True), none (False), or a CA bundle file."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


def uses_proxy(url: str) -> bool:
    """Whether the environment routes `url` through a proxy."""
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parsed.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parsed.host)


class PoolTransport(httpx.AsyncBaseTransport):
    def __init__(self, size: int, context: ssl.SSLContext) -> None:
        self._slots = asyncio.Semaphore(size)
        self._idle: dict[_Key, deque[httpcore.AsyncHTTPConnection]] = {}
        self._all: set[httpcore.AsyncHTTPConnection] = set()
        self._ssl = context
        self._backend = netstream.Backend()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = httpcore.Origin(url.raw_scheme, url.raw_host, url.port or _port(url.raw_scheme))
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        await self._slots.acquire()
        try:
            connection, response = await self._send(origin, core_request)
        except BaseException as e:
            self._slots.release()
            _raise_as_httpx(e, request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(self, origin, connection, response),
            extensions=response.extensions,
        )

    async def _send(
        self, origin: httpcore.Origin, request: httpcore.Request
    ) -> tuple[httpcore.AsyncHTTPConnection, httpcore.Response]:
        idle = self._idle.setdefault(_key(origin), deque())
        while idle:
            connection = idle.pop()  # the most recently used is the least likely to be stale
            if connection.is_idle() and not connection.has_expired():
                try:
                    return connection, await connection.handle_async_request(request)
                except httpcore.ConnectionNotAvailable:
                    pass  # it closed between the check and the send
                except BaseException:
                    await self._discard(connection)
                    raise
            await self._discard(connection)
        connection = httpcore.AsyncHTTPConnection(
            origin=origin,
            ssl_context=self._ssl,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=self._backend,
        )
        self._all.add(connection)
        try:
            return connection, await connection.handle_async_request(request)
        except BaseException:
            await self._discard(connection)
            raise

    async def _discard(self, connection: httpcore.AsyncHTTPConnection) -> None:
        """Close a connection that failed or went stale, and forget it."""
        self._all.discard(connection)
        await connection.aclose()

    def _release(self, origin: httpcore.Origin, connection: httpcore.AsyncHTTPConnection) -> None:
        if connection.is_idle():
            self._idle.setdefault(_key(origin), deque()).append(connection)
        else:
            self._all.discard(connection)
        self._slots.release()

    async def aclose(self) -> None:
        connections, self._all = self._all, set()
        self._idle.clear()
        for connection in connections:
            await connection.aclose()


class _Body(httpx.AsyncByteStream):
    """The response body; closing it hands the connection back to the pool, once."""

    def __init__(
        self,
        pool: PoolTransport,
        origin: httpcore.Origin,
        connection: httpcore.AsyncHTTPConnection,
        response: httpcore.Response,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection = connection
        self._response = response
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._response.aiter_stream():
                yield part
        except Exception as e:
            _raise_as_httpx(e, None)

    async def aclose(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            await self._response.aclose()
        finally:
            self._pool._release(self._origin, self._connection)


def _raise_as_httpx(error: BaseException, request: httpx.Request | None) -> NoReturn:
    for core, mapped in _EXCEPTIONS:
        if isinstance(error, core):
            raise mapped(str(error), request=request) from error
    raise error


_Key = tuple[bytes, bytes, int]


def _key(origin: httpcore.Origin) -> _Key:
    return origin.scheme, origin.host, origin.port


def _port(scheme: bytes) -> int:
    return 443 if scheme == b"https" else 80
