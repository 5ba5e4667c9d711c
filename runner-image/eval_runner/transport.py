"""The pooled HTTP client of a run: one httpx.AsyncClient per service, on a lean transport.

httpx stays the client API (requests, responses, timeouts and exceptions are httpx's), but
beneath it runs the runner's own HTTP/1.1 pool (http11.py): on httpcore's connections (h11
on anyio) the runner topped out near 1,300 requests/s and 0.43 of the ideal rate at 128
requests in flight; on its own, 4,000 and 0.87 (benchmarks/runner_vs_peers.py; the rest
of the way to 0.9 is http_process.py).

Proxies: when the environment names a proxy for the service (HTTP_PROXY, HTTPS_PROXY,
ALL_PROXY, minus NO_PROXY), httpx's own transport is used, which knows how to tunnel.
"""

from __future__ import annotations

import ssl
import urllib.request
from http.cookiejar import CookieJar
from typing import Any

import httpx

from eval_runner.http11 import PoolTransport

_CookieTypes = httpx.Cookies | CookieJar | dict[str, str] | list[tuple[str, str]]


def http_client(size: int, timeout: float, verify: bool | str, url: str) -> httpx.AsyncClient:
    """The client for the service at `url`, holding at most `size` connections."""
    timeouts = httpx.Timeout(timeout)
    context = ssl_context(verify)
    if uses_proxy(url):
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        return Client(limits=limits, timeout=timeouts, verify=context)
    client = Client(transport=PoolTransport(size, context), timeout=timeouts)
    client.bounds_whole_reply = True
    return client


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


class Cookies(httpx.Cookies):
    """httpx's cookie jar, minus its cost when a reply sets no cookie.

    httpx hands every reply to http.cookiejar through urllib shims, about a tenth of a
    request's CPU in the runner; model services rarely set cookies, so a reply without
    Set-Cookie skips that. Cookies a service does set are kept and sent as usual.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class Client(httpx.AsyncClient):
    """httpx.AsyncClient with the cheaper cookie jar above."""

    # On the runner's transport, the read timeout bounds the whole reply, not each read
    # (httpx's meaning), so a caller needs no deadline of its own around a request.
    bounds_whole_reply = False

    def __init__(self, *, cookies: _CookieTypes | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jar = Cookies(cookies)

    @property
    def cookies(self) -> Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: _CookieTypes) -> None:
        self._jar = Cookies(cookies)
