"""kopf wiring: every event that may change what an EvalTask should say (the EvalTask's
own, its Jobs' and pods', an EvalRun's deletion, a change to a task configuration that
its tasks name) runs the same reconcile, serialized per EvalTask. Events of the
operator's own writes (EvalRun creates and status writes, Job creates, EvalTask status
writes) are no news and run nothing.

Handlers only react: they name the EvalTask and ask for a pass. Passes for one EvalTask
never overlap (an asyncio lock each), and a burst of events while a pass runs collapses
into one more pass, which sees everything that happened.

A pass an event asks for reads nothing from the API server: kopf's indexes hold every
EvalTask, EvalRun, Job and pod of the operator as the watches last showed them, and kopf
calls no handler before their first listing is complete. `cache.Writes` lays the
operator's own writes over them until the watches show them too. A pass the pass itself
asked for (its timer while runs are unfinished, or a retry) reads the API server afresh,
so a watch that missed something costs at most a timer's wait.

Only event handlers are used, no create/update handlers and no timers: kopf then keeps no
state on our objects (no finalizer, no last-handled-configuration annotation, which would
copy the spec, literal auth values included, into an annotation). A pass says itself when
it wants to be looked at again (`Outcome.requeue_after`): while runs are unfinished, and
after an error. A finished EvalTask costs nothing until something changes.

A pass that fails, whatever with, is logged, counted, and retried with a backoff that
doubles per failure in a row (RETRY_DELAY_SECONDS up to RETRY_MAX_SECONDS): an exception
let through would end the chain of timers and leave the EvalTask unlooked-at until its
next event. What no retry fixes by itself is also said on the EvalTask
(reconcile.report_failure).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

import kopf

from eval_operator import cache, checks, constants, jobstate, kube, metrics, reconcile, redaction

log = logging.getLogger(__name__)

RETRY_DELAY_SECONDS: Final = 10.0
RETRY_MAX_SECONDS: Final = 300.0
Key = tuple[str, str]
ConfigKey = tuple[str, str, str]  # (kind, namespace or "", name)
# What the watches show of one EvalTask; None when they do not show it.
Source = Callable[[str, str], cache.Snapshot | None]


class Reconciler:
    """Runs reconcile passes, one at a time per EvalTask, coalescing bursts."""

    def __init__(
        self,
        api_factory: Callable[[], kube.Api],
        config: reconcile.Config,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int = constants.DEFAULT_WORKERS,
    ) -> None:
        """`workers`: passes of different EvalTasks that may run at once (threads: a pass
        mostly waits for the API server), and as many threads that make a pass's
        independent writes at once (shared by all passes: a busy cluster sends no more)."""
        self._api_factory = api_factory
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pass")
        self._writers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="write")
        self._config = config
        self._clock = clock
        self._locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        # A pass waits for a free worker before it takes its snapshot: one that waited in
        # the executor's queue would act on what the watches showed when it was queued
        # (at 200 EvalTasks, records of states long past and a pass more to correct them).
        self._workers = workers
        self._slots: asyncio.Semaphore | None = None
        self._queued: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._seen: dict[Key, tuple[Any, ...]] = {}
        self._source: Source | None = None
        self._fresh: set[Key] = set()
        # Passes failed in a row, per EvalTask: the retry's backoff.
        self._failures: dict[Key, int] = {}
        self.writes = cache.Writes()

    def close(self) -> None:
        """Wait for the passes and writes under way: none may write once the Lease is
        handed on."""
        self._executor.shutdown(wait=True)
        self._writers.shutdown(wait=True)

    def watch(self, source: Source) -> None:
        """Passes for events read `source` (kopf's indexes) instead of the API server."""
        self._source = source

    async def trigger(self, namespace: str, name: str, fresh: bool = False) -> None:
        """Ask for a pass; `fresh`: one that reads the API server, not the watches."""
        key = (namespace, name)
        if fresh:
            self._fresh.add(key)
        if key in self._queued:
            return  # a pass is already waiting; it will see this change too
        self._queued.add(key)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._workers)  # of the running loop
        async with self._locks[key], self._slots:
            # Until here, later triggers of this key were folded into this pass.
            self._queued.discard(key)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            snapshot = None
            if key in self._fresh:
                self._fresh.discard(key)
            elif self._source is not None:
                try:
                    # On the event loop, where kopf changes its indexes: a consistent copy.
                    snapshot = self._source(namespace, name)
                    snapshot = self.writes.merge(snapshot) if snapshot is not None else None
                except Exception:
                    log.exception("%s/%s: no copy from the watches; reading the API", *key)
                    snapshot = None
            loop = asyncio.get_running_loop()
            delay, fresh = await loop.run_in_executor(
                self._executor, self._pass, namespace, name, snapshot
            )
            if delay is not None:
                self._schedule(key, delay, fresh)

    def _schedule(self, key: Key, delay: float, fresh: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(
            delay, lambda: loop.create_task(self.trigger(*key, fresh=fresh))
        )

    def changed(self, namespace: str, name: str, body: kopf.Body | dict[str, Any]) -> bool:
        """Whether an EvalTask event carries news: our own status writes do not."""
        meta = body.get("metadata", {})
        marker = (
            meta.get("generation"),
            (meta.get("annotations") or {}).get(constants.ANNOTATION_RERUN),
            bool(meta.get("deletionTimestamp")),
        )
        key = (namespace, name)
        if self._seen.get(key) == marker:
            return False
        self._seen[key] = marker
        return True

    def forget(self, namespace: str, name: str, uid: str = "") -> None:
        key = (namespace, name)
        self._seen.pop(key, None)
        self._failures.pop(key, None)
        self.writes.clear(uid)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        metrics.forget(namespace, name)
        if self._config.progress is not None and uid:
            self._config.progress.forget(set(), prefix=f"{uid}/")  # its pods' read times
        redaction.MEMORY.forget(uid)
        checks.DRY_RUNS.forget(uid)

    def _pass(
        self, namespace: str, name: str, snapshot: cache.Snapshot | None = None
    ) -> tuple[float | None, bool]:
        """One pass; the seconds until the next one it asks for (None: none), and whether
        that one reads the API server afresh."""
        started = time.monotonic()
        result = metrics.RESULT_ERROR
        key = (namespace, name)
        api: kube.Api | None = None
        try:
            owner = str(snapshot.evaltask["metadata"]["uid"]) if snapshot else ""
            api = cache.WritingApi(self._api_factory(), self.writes, owner)
            outcome = reconcile.reconcile(
                api, namespace, name, self._clock(), self._config, snapshot, self._writers
            )
            result = metrics.RESULT_INVALID if outcome and outcome.invalid else metrics.RESULT_OK
        except Exception as e:
            return self._failed(key, api, e), True
        finally:
            elapsed = time.monotonic() - started
            metrics.RECONCILE_TOTAL.labels(result).inc()
            metrics.RECONCILE_SECONDS.labels(result).observe(elapsed)
        self._failures.pop(key, None)
        if outcome is None:
            metrics.forget(namespace, name)
            return None, True
        metrics.record_status(namespace, name, outcome.status, outcome.runs)
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
        return outcome.requeue_after, outcome.requeue_fresh

    def _failed(self, key: Key, api: kube.Api | None, error: Exception) -> float:
        """Log a failed pass, say it on the EvalTask when no retry fixes it by itself, and
        the seconds until the retry."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        # The exponent bounded: 2.0 ** 1024 overflows, and the delay is capped long before.
        delay = min(RETRY_DELAY_SECONDS * 2.0 ** min(failures - 1, 30), RETRY_MAX_SECONDS)
        namespace, name = key
        if isinstance(error, kube.ApiError):
            # The API server's answer says it all: no traceback.
            log.warning("%s/%s: %s; retrying in %gs", namespace, name, error, delay)
        else:
            log.exception("%s/%s: the pass failed; retrying in %gs", namespace, name, delay)
        # A hiccup (429, 5xx, no answer), a stale write, an object gone: the retry is the
        # fix. Anything else repeats until someone acts: said where they look.
        passing = isinstance(error, kube.Transient | kube.Conflict | kube.NotFound)
        if api is not None and not passing:
            reconcile.report_failure(api, namespace, name, self._clock(), error)
        return delay


RECONCILER: Reconciler | None = None


def _reconciler() -> Reconciler:
    if RECONCILER is None:
        raise RuntimeError("eval_operator.handlers.RECONCILER is not configured")
    return RECONCILER


@kopf.on.event(constants.GROUP, constants.VERSION, constants.EVALTASK.plural)
async def evaltask_event(
    type: str | None, body: kopf.Body, namespace: str | None, name: str, **kwargs: Any
) -> None:
    if not namespace:
        return
    _watch(kwargs)
    if type == "DELETED":
        _reconciler().forget(namespace, name, str(body.get("metadata", {}).get("uid", "")))
        return
    if _reconciler().changed(namespace, name, body):
        await _reconciler().trigger(namespace, name)


@kopf.index(constants.GROUP, constants.VERSION, constants.EVALTASK.plural)
def evaltasks_by_uid(uid: str, name: str, **_: Any) -> dict[str, str]:
    """uid -> name: EvalRuns, Jobs and pods carry their EvalTask's uid as a label."""
    return {uid: name}


@kopf.index(constants.GROUP, constants.VERSION, constants.EVALTASK.plural)
def evaltask_bodies(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): cache.slim(body)}


def config_keys(namespace: str | None, spec: Mapping[str, Any] | None) -> list[ConfigKey]:
    """(kind, namespace or "" for a ClusterEvalTaskConfig, name) of each config that an
    EvalTask's tasks name, read from its spec as written (it may be invalid)."""
    tasks = (spec or {}).get("tasks")
    keys = []
    for task in tasks if isinstance(tasks, list) else []:
        ref = task.get("configRef") if isinstance(task, dict) else None
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
            continue
        kind = ref.get("kind") or constants.TASK_CONFIG.kind
        where = "" if kind == constants.CLUSTER_TASK_CONFIG.kind else namespace or ""
        keys.append((str(kind), where, ref["name"]))
    return keys


@kopf.index(constants.GROUP, constants.VERSION, constants.EVALTASK.plural)
def evaltasks_by_config(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[ConfigKey, Key] | None:
    """Config key -> the EvalTasks whose tasks name that config: a config that appears or
    changes brings their passes (the runs waiting for it start)."""
    return {key: (namespace or "", name) for key in config_keys(namespace, spec)} or None


async def _config_event(
    kind: str, type_: str | None, namespace: str | None, name: str, kwargs: Mapping[str, Any]
) -> None:
    if type_ is None:
        return  # kopf's initial listing: every EvalTask gets its own first pass anyway
    key = (kind, namespace or "", name)
    for evaltask_namespace, evaltask in list(kwargs["evaltasks_by_config"].get(key, [])):
        await _reconciler().trigger(evaltask_namespace, evaltask)


def _by_owner(
    body: kopf.Body, kept: Callable[[kopf.Body], dict[str, Any]] = cache.slim
) -> dict[str, dict[str, Any]] | None:
    uid = cache.owner_uid(body)
    return {uid: kept(body)} if uid else None


class Indexes:
    """A pass's snapshot of one EvalTask, taken from kopf's indexes."""

    def __init__(self, indexes: Mapping[str, Any]) -> None:
        self._evaltasks = indexes["evaltask_bodies"]
        self._runs = indexes["evalruns_by_owner"]
        self._jobs = indexes["jobs_by_owner"]
        self._pods = indexes["pods_by_owner"]

    def __call__(self, namespace: str, name: str) -> cache.Snapshot | None:
        found = list(self._evaltasks.get((namespace, name), []))
        if not found:
            return None
        uid = str(found[0]["metadata"]["uid"])
        return cache.Snapshot(
            found[0],
            list(self._runs.get(uid, [])),
            list(self._jobs.get(uid, [])),
            list(self._pods.get(uid, [])),
        )


def _watch(kwargs: Mapping[str, Any]) -> None:
    """kopf hands its indexes only to handlers: the first one passes them on."""
    reconciler = _reconciler()
    if reconciler._source is None and "pods_by_owner" in kwargs:
        reconciler.watch(Indexes(kwargs))
        log.info("passes for events read the watches' indexes")


async def _child_event(
    type_: str | None, body: kopf.Body, namespace: str | None, kwargs: Mapping[str, Any]
) -> None:
    if type_ == "DELETED":
        # Nothing the operator wrote of it (kept until the watch shows it) may bring it back.
        _reconciler().writes.gone(body)
    _watch(kwargs)
    uid = cache.owner_uid(body)
    if not uid or not namespace:
        return
    # The index is a live view that kopf updates while we await: copy it first.
    for name in list(kwargs["evaltasks_by_uid"].get(uid, [])):
        await _reconciler().trigger(namespace, name)


@kopf.on.event(constants.GROUP, constants.VERSION, constants.TASK_CONFIG.plural)
async def task_config_event(
    type: str | None, namespace: str | None, name: str, **kwargs: Any
) -> None:
    await _config_event(constants.TASK_CONFIG.kind, type, namespace, name, kwargs)


@kopf.on.event(constants.GROUP, constants.VERSION, constants.CLUSTER_TASK_CONFIG.plural)
async def cluster_task_config_event(type: str | None, name: str, **kwargs: Any) -> None:
    await _config_event(constants.CLUSTER_TASK_CONFIG.kind, type, None, name, kwargs)


_MANAGED: Final = {constants.LABEL_MANAGED_BY: constants.MANAGED_BY}
# What the operator makes and watches, as (group, version, plural).
EVALRUNS: Final = (constants.GROUP, constants.VERSION, constants.EVALRUN.plural)
JOBS: Final = ("batch", "v1", "jobs")
PODS: Final = ("", "v1", "pods")


class NoEssence(kopf.DiffBaseStorage):
    """kopf's last-handled state, for create/update handlers, which this operator has none
    of: kopf would otherwise deep-copy every body of every event to build it (a tenth of
    the operator's CPU at 2,400 runs) and never use it."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


class Backoffs:
    """kopf's retry delays for a failed API request: a fresh, endless sequence each time
    kopf iterates it (kopf retries until its iterable ends)."""

    FIRST: Final = (0.5, 0.5, 1, 1, 2, 3, 5, 8)
    THEN: Final = 10.0

    def __iter__(self) -> Iterator[float]:
        return itertools.chain(self.FIRST, itertools.repeat(self.THEN))


def configure(settings: kopf.OperatorSettings, namespaces: list[str]) -> None:
    """kopf's settings for this operator."""
    settings.persistence.diffbase_storage = NoEssence()
    # Our own status and events (events.k8s.io) only: kopf would post its warnings as
    # core events, which the operator is not granted (a 403 per warning) and nobody reads
    # beside our own.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    # Every API call of kopf's has a deadline too: a hung connection cannot wedge it.
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # Sooner than kopf's default (1, 1, 2, 3, 5, 8, 13, 21) at first: an operator started
    # with its CRDs meets "storage is (re)initializing" (429) for some seconds, and every
    # handler waits for the first listing of all four watches.
    # And then every 10 s for as long as it takes: with a finite list, an API server away
    # for longer than its sum (a minute) made kopf give up a watch for good, and the
    # operator exit or run on blind, instead of carrying on once it is back.
    settings.networking.error_backoffs = Backoffs()
    if namespaces:
        # Fixed namespaces need no namespace listing, which a namespaced install is not
        # allowed: without this, kopf retries it for about a minute before serving.
        settings.scanning.disabled = True
    # The API server sends only our own EvalRuns, Jobs and pods: kopf neither receives nor
    # lists the cluster's other Jobs and pods (the handlers' `labels` filter only locally).
    selector = f"{constants.LABEL_MANAGED_BY}={constants.MANAGED_BY}"
    for resource in (EVALRUNS, JOBS, PODS):
        settings.watching.label_selectors[resource] = selector


@kopf.on.event(*EVALRUNS, labels=_MANAGED)
async def evalrun_event(
    type: str | None, body: kopf.Body, namespace: str | None, **kwargs: Any
) -> None:
    # Only the operator writes EvalRuns: its own creates and status writes are no news (a
    # pass for each would only read what it just wrote). A deletion is: a user reruns that
    # run by deleting its record.
    if type == "DELETED":
        await _child_event(type, body, namespace, kwargs)


@kopf.index(*EVALRUNS, labels=_MANAGED)
def evalruns_by_owner(body: kopf.Body, **_: Any) -> Any:
    return _by_owner(body)


class News:
    """The last digest of each Job and pod seen (by uid): an event that changes nothing a
    pass reads runs no pass."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}  # hashes: a digest may hold a 4 KiB message

    def check(self, type_: str | None, body: Mapping[str, Any], digest: tuple[Any, ...]) -> bool:
        uid = str(body.get("metadata", {}).get("uid", ""))
        if type_ == "DELETED":
            self._seen.pop(uid, None)
            return True
        if self._seen.get(uid) == hash(digest):
            return False
        self._seen[uid] = hash(digest)
        return True


NEWS: Final = News()


@kopf.on.event(*JOBS, labels=_MANAGED)
async def job_event(
    type: str | None, body: kopf.Body, namespace: str | None, **kwargs: Any
) -> None:
    # The operator created the Job: its creation is no news; what the Job controller, a
    # user or the garbage collector does to it may be.
    if NEWS.check(type, body, jobstate.job_digest(body)) and type != "ADDED":
        await _child_event(type, body, namespace, kwargs)


@kopf.index(*JOBS, labels=_MANAGED)
def jobs_by_owner(body: kopf.Body, **_: Any) -> Any:
    return _by_owner(body, cache.slim_job)


@kopf.on.event(*PODS, labels=_MANAGED)
async def pod_event(
    type: str | None, body: kopf.Body, namespace: str | None, **kwargs: Any
) -> None:
    if NEWS.check(type, body, jobstate.pod_digest(body)):
        await _child_event(type, body, namespace, kwargs)


@kopf.index(*PODS, labels=_MANAGED)
def pods_by_owner(body: kopf.Body, **_: Any) -> Any:
    return _by_owner(body, lambda pod: cache.slim(pod, spec=False))  # never read
