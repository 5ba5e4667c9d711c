"""What a pass observes without asking the API server: the watches' view, plus the
operator's own writes that the watches have not shown yet.

kopf's watches keep every EvalTask, EvalRun, Job and pod of the operator in memory (its
indexes, see handlers.py), so a pass triggered by an event reads nothing. A watch shows a
write only some time after it is made; until then the pass must see what it wrote, or it
would create a Job again, forget a result it recorded, or keep a Job it deleted (as
client-go's MutationCache does for controllers). `Writes` keeps the answers to the
operator's writes and the uids it deleted, per EvalTask; `Writes.merge` lays them over a
snapshot, and drops each once the watch has caught up.

resourceVersions are compared as integers: all of them come from one etcd revision counter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eval_operator import constants, kube

# A write the watch never shows (it restarted and missed it, or the object went while it
# was away) is dropped after this long rather than shown forever.
WRITE_TTL_SECONDS: Final = 300.0

Body = Mapping[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """One EvalTask and everything of it, as one pass sees them."""

    evaltask: Body
    runs: Sequence[Body]
    jobs: Sequence[Body]
    pods: Sequence[Body]


def slim(body: Body, spec: bool = True) -> dict[str, Any]:
    """A body without what no pass reads and which costs the most memory: managedFields,
    and the spec unless `spec`.

    New top-level and metadata maps; the rest is shared, and passes never change bodies.
    """
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    dropped = ("metadata",) if spec else ("metadata", "spec")
    return {**{k: v for k, v in body.items() if k not in dropped}, "metadata": meta}


def slim_job(body: Body) -> dict[str, Any]:
    """A Job as passes read it: metadata, status, and of its spec only suspend, the
    deadline, the TTL (set once: a pass must see it set) and the probe's container (whose
    env says how long it may wait). The pod template is most of a Job, and a pass never
    reads the rest of it."""
    spec = body.get("spec") or {}
    kept = {
        k: spec[k]
        for k in ("suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished")
        if k in spec
    }
    init = ((spec.get("template") or {}).get("spec") or {}).get("initContainers") or []
    probe = [c for c in init if c.get("name") == constants.PROBE_CONTAINER]
    if probe:
        kept["template"] = {"spec": {"initContainers": probe}}
    return {**slim(body, spec=False), "spec": kept}


def resource_version(body: Body) -> int:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return -1


def _uid(body: Body) -> str:
    return str(body["metadata"].get("uid", ""))


def owner_uid(body: Body) -> str:
    """The EvalTask a body belongs to: its own uid for an EvalTask, else its label."""
    meta = body.get("metadata") or {}
    if body.get("kind") == constants.EVALTASK.kind:
        return str(meta.get("uid", ""))
    return str((meta.get("labels") or {}).get(constants.LABEL_EVALTASK_UID, ""))


class Writes:
    """The operator's writes not yet seen by its watches, per EvalTask uid (thread-safe:
    passes write from worker threads, snapshots merge on the event loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # EvalTask uid -> object uid -> (when, body as the API server answered the write)
        self._written: dict[str, dict[str, tuple[float, Body]]] = {}
        # EvalTask uid -> uids the operator deleted
        self._deleted: dict[str, set[str]] = {}

    def wrote(self, body: Body) -> None:
        owner, uid = owner_uid(body), _uid(body)
        if not owner or not uid:
            return
        kept = slim_job(body) if body.get("kind") == "Job" else slim(body)
        with self._lock:
            self._written.setdefault(owner, {})[uid] = (self._clock(), kept)

    def deleted(self, owner: str, uid: str) -> None:
        if not owner or not uid:
            return
        with self._lock:
            self._deleted.setdefault(owner, set()).add(uid)
            self._written.get(owner, {}).pop(uid, None)

    def gone(self, body: Body) -> None:
        """The watch saw the object deleted: nothing written of it may bring it back."""
        owner, uid = owner_uid(body), _uid(body)
        with self._lock:
            self._written.get(owner, {}).pop(uid, None)
            self._deleted.get(owner, set()).discard(uid)

    def clear(self, owner: str) -> None:
        """Drop what is kept for one EvalTask: it was deleted."""
        with self._lock:
            self._written.pop(owner, None)
            self._deleted.pop(owner, None)

    def pending(self) -> int:
        """Writes and deletions kept, over all EvalTasks (for tests and metrics)."""
        with self._lock:
            return sum(map(len, self._written.values())) + sum(map(len, self._deleted.values()))

    def merge(self, snapshot: Snapshot) -> Snapshot:
        owner = _uid(snapshot.evaltask)
        with self._lock:
            written = self._written.get(owner, {})
            deleted = self._deleted.get(owner, set())
            if not written and not deleted:
                return snapshot
            now = self._clock()
            for uid in [u for u, (when, _) in written.items() if now - when > WRITE_TTL_SECONDS]:
                del written[uid]
            seen: set[str] = set()
            evaltask = self._newer(snapshot.evaltask, written, seen)
            lists = [
                self._merge_list(objects, kind, written, deleted, seen)
                for objects, kind in (
                    (snapshot.runs, constants.EVALRUN.kind),
                    (snapshot.jobs, "Job"),
                    (snapshot.pods, "Pod"),
                )
            ]
            # Caught up with, or never to be seen: a deletion whose object the watch no
            # longer shows, a write older than what the watch shows.
            deleted.intersection_update(seen)
            for uid in [u for u in written if u in seen]:
                del written[uid]
            if not written:
                self._written.pop(owner, None)
            if not deleted:
                self._deleted.pop(owner, None)
        return Snapshot(evaltask, *lists)

    @staticmethod
    def _newer(cached: Body, written: Mapping[str, tuple[float, Body]], seen: set[str]) -> Body:
        uid = _uid(cached)
        mine = written.get(uid)
        if mine is None:
            return cached
        if resource_version(mine[1]) > resource_version(cached):
            return mine[1]
        seen.add(uid)  # the watch has it: drop what was kept
        return cached

    @staticmethod
    def _merge_list(
        cached: Iterable[Body],
        kind: str,
        written: Mapping[str, tuple[float, Body]],
        deleted: set[str],
        seen: set[str],
    ) -> list[Body]:
        out: list[Body] = []
        shown: set[str] = set()
        for body in cached:
            uid = _uid(body)
            shown.add(uid)
            if uid in deleted:
                seen.add(uid)  # still shown by the watch: the deletion stays kept
                continue
            out.append(Writes._newer(body, written, seen))
        # Created by the operator, not yet shown by the watch.
        out += [b for uid, (_, b) in written.items() if b.get("kind") == kind and uid not in shown]
        return out


class WritingApi:
    """An Api that tells `Writes` what each of its writes answered.

    `owner`: the uid of the EvalTask whose pass this is; a pass that reads the EvalTask
    from the API server sets it. Such a pass drops nothing that is kept: the watches may
    still not show the writes of the passes before it, and the next pass reads them.
    """

    def __init__(self, api: kube.Api, writes: Writes, owner: str = "") -> None:
        self._api = api
        self._writes = writes
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)  # reads and the writes nobody watches

    def get_evaltask(self, namespace: str, name: str) -> dict[str, Any]:
        body = self._api.get_evaltask(namespace, name)
        self._owner = _uid(body)
        return body

    def _wrote(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._writes.wrote(body)
        return dict(body)

    def create_evalrun(self, evalrun: Mapping[str, Any]) -> dict[str, Any]:
        return self._wrote(self._api.create_evalrun(evalrun))

    def patch_evalrun_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._wrote(self._api.patch_evalrun_status(namespace, name, status))

    def create_job(self, job: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        answer = self._api.create_job(job, dry_run)
        return answer if dry_run else self._wrote(answer)

    def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._wrote(self._api.patch_job(namespace, name, patch))

    def patch_evaltask_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._wrote(self._api.patch_evaltask_status(namespace, name, status))

    def patch_evaltask_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> dict[str, Any]:
        return self._wrote(self._api.patch_evaltask_annotations(namespace, name, annotations))

    def delete_evalrun(self, namespace: str, name: str) -> str:
        uid = self._api.delete_evalrun(namespace, name)
        self._writes.deleted(self._owner, uid)
        return uid

    def delete_job(self, namespace: str, name: str) -> str:
        uid = self._api.delete_job(namespace, name)
        self._writes.deleted(self._owner, uid)
        return uid
