"""The one URL parser: the runner, the probe and the operator's spec check all use it.

A URL the operator accepts must be one the runner can send requests to, so both ask
httpx's URL parser rather than a regular expression that approximates it.
"""

from __future__ import annotations

import httpx


def problem(url: str) -> str | None:
    """None when `url` is an http(s) URL the runner can request, else what is wrong."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as e:
        return f"not a valid URL: {e}"
    if parsed.scheme not in ("http", "https"):
        return f"the scheme must be http or https, not {parsed.scheme!r}"
    if not parsed.host:
        return "the URL has no host"
    if any(c.isspace() for c in url):
        return "the URL contains white space"
    return None
