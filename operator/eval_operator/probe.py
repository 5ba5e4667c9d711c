"""Probe a model service before its chain starts (spec.probe).

Any HTTP answer counts as reachable, even 401 or 405: the probe asks whether something
listens, not whether the request is right. No auth header is sent, so no secret leaves
the operator.
"""

from __future__ import annotations

from typing import Final, Protocol

import httpx

TIMEOUT_SECONDS: Final = 3.0


class Prober(Protocol):
    def __call__(self, url: str) -> str | None:
        """None when the URL answers, else why not."""
        ...


def probe_url(url: str) -> str | None:
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, verify=False) as client:
            # Certificates are the evaluation's business; the probe asks only for an answer.
            client.get(url)
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return None
