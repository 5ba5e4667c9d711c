"""The operator's HTTP endpoint: /metrics for Prometheus, /healthz and /readyz for probes.

/healthz fails (503) once one of kopf's watchers has failed for good, so the pod's liveness
probe restarts an operator that would otherwise run on without seeing part of the cluster,
and while requests to the API server have failed for a while (it is gone, or refuses a
watch), saying why.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eval_operator import health


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(_: web.Request) -> web.Response:
    problems = health.HEALTH.problems() + health.REQUESTS.problems()
    if problems:
        return web.Response(status=503, text="failed: " + "; ".join(problems) + "\n")
    return web.Response(text="ok\n")


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def start(host: str, port: int) -> web.AppRunner:
    health.install()
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
