"""kopf wiring: every event about an EvalTask or one of its Jobs or pods runs the same
reconcile, serialized per EvalTask.

Handlers only react: they name the EvalTask and ask for a pass. Passes for one EvalTask
never overlap (an asyncio lock each), and a burst of events while a pass runs collapses
into one more pass, which sees everything that happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import kopf

from eval_operator import constants, kube, metrics, reconcile

log = logging.getLogger(__name__)

TIMER_INTERVAL_SECONDS: Final = 60.0
RETRY_DELAY_SECONDS: Final = 10.0


class Reconciler:
    """Runs reconcile passes, one at a time per EvalTask, coalescing bursts."""

    def __init__(
        self,
        api_factory: Callable[[], kube.Api],
        config: reconcile.Config,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api_factory = api_factory
        self._config = config
        self._clock = clock
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._queued: set[tuple[str, str]] = set()

    async def trigger(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key in self._queued:
            return  # a pass is already waiting; it will see this change too
        self._queued.add(key)
        async with self._locks[key]:
            self._queued.discard(key)
            await asyncio.to_thread(self._pass, namespace, name)

    def _pass(self, namespace: str, name: str) -> None:
        started = time.monotonic()
        result = metrics.RESULT_ERROR
        try:
            outcome = reconcile.reconcile(
                self._api_factory(), namespace, name, self._clock(), self._config
            )
            result = metrics.RESULT_INVALID if outcome and outcome.invalid else metrics.RESULT_OK
            if outcome is None:
                metrics.forget(namespace, name)
            else:
                metrics.record_status(namespace, name, outcome.status)
                for task, seconds in outcome.finished:
                    metrics.observe_run(task, seconds)
                metrics.JOBS_CREATED_TOTAL.inc(len(outcome.created))
                if outcome.created or outcome.deleted:
                    log.info(
                        "%s/%s: created %s, deleted %s",
                        namespace,
                        name,
                        outcome.created or "-",
                        outcome.deleted or "-",
                    )
        except kube.ApiError as e:
            # Temporary: the API refused or was unreachable; kopf retries the handler.
            raise kopf.TemporaryError(
                f"{namespace}/{name}: {e}", delay=RETRY_DELAY_SECONDS
            ) from None
        finally:
            elapsed = time.monotonic() - started
            metrics.RECONCILE_TOTAL.labels(result).inc()
            metrics.RECONCILE_SECONDS.labels(result).observe(elapsed)


RECONCILER: Reconciler | None = None


def _reconciler() -> Reconciler:
    if RECONCILER is None:
        raise RuntimeError("eval_operator.handlers.RECONCILER is not configured")
    return RECONCILER


@kopf.on.resume(constants.GROUP, constants.VERSION, constants.PLURAL)
@kopf.on.create(constants.GROUP, constants.VERSION, constants.PLURAL)
@kopf.on.update(constants.GROUP, constants.VERSION, constants.PLURAL)
async def evaltask_changed(namespace: str | None, name: str, **_: Any) -> None:
    await _reconciler().trigger(namespace or "", name)


@kopf.timer(
    constants.GROUP,
    constants.VERSION,
    constants.PLURAL,
    interval=TIMER_INTERVAL_SECONDS,
    initial_delay=TIMER_INTERVAL_SECONDS,
)
async def evaltask_timer(namespace: str | None, name: str, **_: Any) -> None:
    await _reconciler().trigger(namespace or "", name)


@kopf.on.event(constants.GROUP, constants.VERSION, constants.PLURAL)
async def evaltask_event(type: str, namespace: str | None, name: str, **_: Any) -> None:
    # No finalizer (nothing to clean up but our own series): notice deletion by its event.
    if type == "DELETED" and namespace:
        metrics.forget(namespace, name)


def _owner_name(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == constants.KIND and ref.get("apiVersion") == constants.API_VERSION:
            return str(ref["name"])
    return None


@kopf.on.event("batch", "v1", "jobs", labels={constants.LABEL_MANAGED_BY: constants.MANAGED_BY})
async def job_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
    owner = _owner_name(body)
    if owner and namespace:
        await _reconciler().trigger(namespace, owner)


@kopf.index(constants.GROUP, constants.VERSION, constants.PLURAL)
def evaltasks_by_uid(uid: str, name: str, **_: Any) -> dict[str, str]:
    """uid -> name: pods are owned by Jobs, so their EvalTask is found by our uid label."""
    return {uid: name}


@kopf.on.event("", "v1", "pods", labels={constants.LABEL_MANAGED_BY: constants.MANAGED_BY})
async def pod_event(body: kopf.Body, namespace: str | None, **kwargs: Any) -> None:
    index: kopf.Index[str, str] = kwargs["evaltasks_by_uid"]
    uid = body.get("metadata", {}).get("labels", {}).get(constants.LABEL_EVALTASK_UID)
    if not uid or not namespace:
        return
    # The index is a live view that kopf updates while we await: copy it first.
    for name in list(index.get(uid, [])):
        await _reconciler().trigger(namespace, name)
