"""Wait for the model service to answer before the first sample is sent.

A model server that is still loading its weights refuses connections for minutes; without
this wait every sample of the first minutes would burn its retries and be recorded as an
error. Any HTTP answer, even a 404 or 405, proves a server is listening: the wait is for
the process, not for a particular route. A certificate the runner does not trust is no
reason to wait: the server is up, and an hour later it will present the same certificate.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final, TextIO

import aiohttp

from eval_runner.config import Endpoint
from eval_runner.errors import ModelUnreachable

FIRST_DELAY: Final = 0.25
MAX_DELAY: Final = 10.0
POLL_TIMEOUT: Final = 10.0


async def wait_for_model(
    http: aiohttp.ClientSession,
    endpoint: Endpoint,
    limit: float,
    out: TextIO,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    setting: str = "EVAL_WAIT_FOR_MODEL_SECONDS",
) -> float:
    """Seconds waited; ModelUnreachable when nothing answered within `limit` seconds."""
    started = clock()
    deadline = started + limit
    delay = FIRST_DELAY
    announced = False
    while True:
        remaining = deadline - clock()
        timeout = aiohttp.ClientTimeout(total=max(0.1, min(POLL_TIMEOUT, remaining)))
        try:
            async with http.get(endpoint.url, timeout=timeout, allow_redirects=False):
                pass
        except (aiohttp.ClientError, TimeoutError) as e:
            if _tls_failure(e):
                raise ModelUnreachable(
                    f"the model service at {endpoint.display_url} presented a certificate that "
                    f"is not trusted: {e} (give the model tls.caConfigMap, or set "
                    "EVAL_TLS_VERIFY to the CA bundle)"
                ) from None
            last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        else:
            waited = clock() - started
            if announced:
                print(f"the model service answered after {waited:.1f}s", file=out, flush=True)
            return waited
        remaining = deadline - clock()
        if remaining <= 0:
            raise ModelUnreachable(
                f"the model service at {endpoint.display_url} gave no HTTP answer within "
                f"{limit:g}s ({setting}); last error: {last}"
            )
        if not announced:
            print(
                f"waiting up to {limit:g}s for the model service at {endpoint.display_url} "
                f"({last})",
                file=out,
                flush=True,
            )
            announced = True
        await sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_DELAY)


def _tls_failure(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
