"""The pooled HTTP client of a run: one aiohttp.ClientSession per service.

aiohttp parses replies in C and keeps connections alive in a pool of its own; it is the
client lm-eval sends with (the runner beside it: benchmarks/runner_vs_peers.py, README).
A session serves one service, so the service's headers are set on it once.

Redirects are not followed (a model service that redirects a POST is misconfigured; the
status says so). Proxies: HTTP_PROXY, HTTPS_PROXY or ALL_PROXY for the service's scheme,
minus NO_PROXY, as urllib reads them (aiohttp's own trust_env skips ALL_PROXY and reads
~/.netrc too).
"""

from __future__ import annotations

import ssl
import urllib.request
from typing import Final
from urllib.parse import urlsplit

import aiohttp

# Idle connections older than this are closed, not reused: model servers (uvicorn, vLLM)
# drop theirs after 5 s, and a request sent on a connection being closed is lost.
KEEPALIVE_SECONDS: Final = 4.0


def http_client(size: int, timeout: float, verify: bool | str, url: str) -> aiohttp.ClientSession:
    """The session for the service at `url`, holding at most `size` connections; `timeout`
    bounds a request's whole exchange, from queueing for a connection to the reply's end."""
    connector = aiohttp.TCPConnector(
        limit=size, ssl=ssl_context(verify), keepalive_timeout=KEEPALIVE_SECONDS
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), proxy=proxy_for(url)
    )


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """EVAL_TLS_VERIFY: the system's CAs (True), none (False), or a CA bundle file."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url`, if any."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy
