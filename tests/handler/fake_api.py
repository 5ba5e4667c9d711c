"""An in-memory stand-in for kube.Api, plus a few Job-controller moves for tests.

It answers as a real API server does where our bugs live:
- reads return maps with their keys sorted (the API server re-encodes objects), so code
  that relies on the order of a map's keys fails here as it would on a cluster;
- every object gets a uid and a distinct creationTimestamp;
- deleting a Job or an EvalRun leaves its dependents (pods, Jobs) in place until
  `collect_garbage()`: the garbage collector works later, not at once;
- `refuse` makes creations answer 400/403/413 the way admission does (quota, policy,
  webhook, size), and `reject` makes them answer 422 with field causes;
- `inject` makes any verb on any kind answer any status (a 403 from RBAC, a 422 from a
  schema rule, a 503), for some objects or bodies, a number of times or for good;
- a write whose body holds a number JSON cannot carry (inf, nan) answers 400, one over
  the API server's 3 MiB request limit 413, as a real one does: such a body never
  reaches it intact;
- a patch naming a resourceVersion or uid that is not the object's answers 409, the
  optimistic lock of a merge patch;
- EvalTaskConfigs and ClusterEvalTaskConfigs (`put_task_config`) get a new
  resourceVersion with each edit, and a spec their CRD refuses answers 422;
- `delete_evaltask(orphan=True)` is `kubectl delete --cascade=orphan`: the garbage
  collector takes the EvalTask's owner reference off its dependents, which stay.
Every write is recorded, so tests assert on what reconcile asked the API to do.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from eval_operator import cache, constants, kube
from eval_operator import spec as pydantic_spec
from eval_runner import results

T0 = "2026-01-01T00:00:00Z"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
# The API server refuses request bodies larger than this (apiserver's MaxRequestBodyBytes).
MAX_REQUEST_BYTES = 3 * 1024 * 1024
# The reason the API server gives with each status (metav1.StatusReason).
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass
class Fault:
    """One injected answer: `verb` on `kind` answers `status` while `times` lasts."""

    verb: str  # get, list, create, patch, patch_status, delete, log
    kind: str  # EvalTask, EvalRun, Job, Pod, Secret, ConfigMap, Event
    status: int
    message: str
    name: str | None = None  # only this object
    when: Callable[[Mapping[str, Any]], bool] | None = None  # only bodies it accepts
    times: int | None = None  # None: for good
    hits: int = 0


def _sorted(obj: Any) -> Any:
    """What the API server returns: a copy with map keys in sorted order."""
    return json.loads(json.dumps(obj, sort_keys=True))


def _matches(obj: Mapping[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in re.split(r",(?![^(]*\))", selector):
        found = re.fullmatch(r"\s*(\S+)\s+in\s+\(([^)]*)\)\s*", term)
        if found:
            if labels.get(found.group(1)) not in {v.strip() for v in found.group(2).split(",")}:
                return False
            continue
        key, value = term.split("=", 1)
        if labels.get(key) != value:
            return False
    return True


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 merge patch: null removes, maps merge, everything else replaces."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


class FakeApi:
    def __init__(self) -> None:
        self.evaltasks: dict[tuple[str, str], dict[str, Any]] = {}
        self.evalruns: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        # (kind, namespace, name) -> an EvalTaskConfig, or a ClusterEvalTaskConfig (ns "").
        self.task_configs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[dict[str, str]] = []
        # (namespace, pod) -> what its task container printed (see `print`).
        self.logs: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []
        self.dry_runs: list[dict[str, Any]] = []
        # Job name -> FailedCreate event messages the Job controller would have posted.
        self.failed_creates: dict[str, list[str]] = {}
        # Returns a list of causes ({field, message}) for a Job the "server" rejects (422).
        self.reject: Callable[[Mapping[str, Any]], list[dict[str, str]]] = lambda job: []
        # Returns (status, reason, message) for an object admission refuses, else None.
        # Called with (kind, body, dry_run).
        self.refuse: Callable[[str, Mapping[str, Any], bool], tuple[int, str, str] | None] = (
            lambda kind, body, dry_run: None
        )
        self.faults: list[Fault] = []
        self._uids = itertools.count(1)
        self._versions = itertools.count(1)  # one counter for all, as etcd's revision

    def inject(
        self,
        verb: str,
        kind: str,
        status: int,
        message: str = "",
        name: str | None = None,
        when: Callable[[Mapping[str, Any]], bool] | None = None,
        times: int | None = None,
    ) -> Fault:
        """From now on, `verb` on `kind` (one object: `name`; some bodies: `when`) answers
        `status`, `times` times or for good; the returned Fault counts its hits."""
        fault = Fault(verb, kind, status, message or f"injected {status}", name, when, times)
        self.faults.append(fault)
        return fault

    def _fault(
        self, verb: str, kind: str, name: str, body: Mapping[str, Any] | None = None
    ) -> None:
        for fault in self.faults:
            if (fault.verb, fault.kind) != (verb, kind) or fault.times == 0:
                continue
            if fault.name is not None and fault.name != name:
                continue
            if fault.when is not None and not fault.when(body or {}):
                continue
            fault.hits += 1
            if fault.times is not None:
                fault.times -= 1
            reason = _REASONS.get(fault.status, "Unknown")
            raise kube.error_from_status(
                fault.status, json.dumps({"reason": reason, "message": fault.message})
            )

    @staticmethod
    def _sent(body: Mapping[str, Any]) -> None:
        """What the API server says of a body it cannot take as sent."""
        try:
            text = json.dumps(body, allow_nan=False)
        except ValueError:
            # The client writes inf as `Infinity`, which is no JSON: the server's decoder stops.
            raise kube.error_from_status(
                400,
                json.dumps(
                    {
                        "reason": "BadRequest",
                        "message": "the body of the request was in an unknown format: "
                        "invalid character 'I' looking for beginning of value",
                    }
                ),
            ) from None
        if len(text) > MAX_REQUEST_BYTES:
            raise kube.error_from_status(
                413,
                json.dumps(
                    {
                        "reason": "RequestEntityTooLarge",
                        "message": f"Request entity too large: limit is {MAX_REQUEST_BYTES}",
                    }
                ),
            )

    @staticmethod
    def _preconditions(obj: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        """A merge patch that names metadata.resourceVersion or uid applies only to that."""
        meta = patch.get("metadata") or {}
        for key in ("resourceVersion", "uid"):
            if key in meta and meta[key] != obj["metadata"].get(key):
                raise kube.Conflict(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {obj['metadata']['name']}: the object "
                    "has been modified; please apply your changes to the latest version",
                )

    def _touch(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A write: the object gets the next resourceVersion."""
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        return obj

    # --- setup helpers -------------------------------------------------------------
    def _stamp(self) -> tuple[str, str]:
        n = next(self._uids)
        created = (_EPOCH + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"uid-{n}", created

    def add_evaltask(
        self,
        name: str,
        spec: dict[str, Any],
        namespace: str = "ns",
        annotations: dict[str, str] | None = None,
        uid: str | None = None,
    ) -> dict[str, Any]:
        """`uid`: another than the first one's, for an EvalTask applied again."""
        _, created = self._stamp()
        body = {
            "apiVersion": constants.API_VERSION,
            "kind": constants.EVALTASK.kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid or f"uid-{name}",
                "generation": 1,
                "creationTimestamp": created,
                "annotations": annotations or {},
            },
            "spec": spec,
        }
        self.evaltasks[(namespace, name)] = self._touch(body)
        return body

    def delete_evaltask(self, name: str, namespace: str = "ns", orphan: bool = False) -> None:
        """`kubectl delete et`; `orphan`: with --cascade=orphan, so the garbage collector
        first takes its owner reference off every dependent, which then stay."""
        gone = self.evaltasks.pop((namespace, name))["metadata"]["uid"]
        if not orphan:
            return  # its dependents go at the next collect_garbage()
        for store in (self.evalruns, self.jobs, self.pods, self.secrets):
            for obj in store.values():
                refs = obj["metadata"].get("ownerReferences") or []
                kept = [r for r in refs if r.get("uid") != gone]
                if len(kept) != len(refs):
                    obj["metadata"]["ownerReferences"] = kept
                    self._touch(obj)

    def edit_spec(self, name: str, spec: dict[str, Any], namespace: str = "ns") -> None:
        body = self.evaltasks[(namespace, name)]
        body["spec"] = spec
        body["metadata"]["generation"] += 1
        self._touch(body)

    def annotate(self, name: str, annotations: dict[str, str], namespace: str = "ns") -> None:
        self.evaltasks[(namespace, name)]["metadata"]["annotations"].update(annotations)
        self._touch(self.evaltasks[(namespace, name)])

    def add_secret(self, name: str, data: dict[str, str], namespace: str = "ns") -> None:
        import base64

        self.secrets[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }

    def add_configmap(self, name: str, data: dict[str, str], namespace: str = "ns") -> None:
        self.configmaps[(namespace, name)] = {
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }

    def put_task_config(
        self,
        name: str,
        spec: dict[str, Any],
        kind: str = constants.TASK_CONFIG.kind,
        namespace: str = "ns",
    ) -> dict[str, Any]:
        """`kubectl apply` of an EvalTaskConfig (or, by `kind`, a ClusterEvalTaskConfig):
        created, or edited in place with a new resourceVersion. A spec the CRD's schema
        refuses answers 422, as the API server does."""
        try:
            pydantic_spec.TaskSettings.model_validate(spec)
        except ValidationError as e:
            raise kube.Invalid(422, "Invalid", f"{kind} {name!r} is invalid: {e}") from None
        ns = "" if kind == constants.CLUSTER_TASK_CONFIG.kind else namespace
        key = (kind, ns, name)
        if key in self.task_configs:
            body = self.task_configs[key]
            body["spec"] = copy.deepcopy(spec)
            body["metadata"]["generation"] += 1
        else:
            uid, created = self._stamp()
            meta = {"name": name, "uid": uid, "generation": 1, "creationTimestamp": created}
            if ns:
                meta["namespace"] = ns
            body = {
                "apiVersion": constants.API_VERSION,
                "kind": kind,
                "metadata": meta,
                "spec": copy.deepcopy(spec),
            }
            self.task_configs[key] = body
        return _sorted(self._touch(body))

    def delete_task_config(
        self, name: str, kind: str = constants.TASK_CONFIG.kind, namespace: str = "ns"
    ) -> None:
        ns = "" if kind == constants.CLUSTER_TASK_CONFIG.kind else namespace
        del self.task_configs[(kind, ns, name)]

    def status(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        status: dict[str, Any] = _sorted(self.evaltasks[(namespace, name)].get("status") or {})
        return status

    def run_status(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        status: dict[str, Any] = _sorted(self.evalruns[(namespace, name)].get("status") or {})
        return status

    def job_names(self) -> list[str]:
        return sorted(name for (_, name) in self.jobs)

    def collect_garbage(self) -> None:
        """What the garbage collector does, later: dependents of deleted owners go."""
        for store in (self.evalruns, self.jobs, self.pods):
            alive = {
                o["metadata"]["uid"]
                for s in (self.evaltasks, self.evalruns, self.jobs)
                for o in s.values()
                if "uid" in o["metadata"]
            }
            for key in [
                k
                for k, o in store.items()
                if any(r["uid"] not in alive for r in o["metadata"].get("ownerReferences") or [])
            ]:
                del store[key]

    # --- Job controller moves --------------------------------------------------------
    def _pod(
        self,
        job: dict[str, Any],
        phase: str,
        init: dict[str, Any] | None,
        collector: dict[str, Any] | None,
        probe: dict[str, Any] | None = None,
        conditions: list[dict[str, Any]] | None = None,
    ) -> str:
        name = job["metadata"]["name"]
        ns = job["metadata"]["namespace"]
        labels = {
            **job["spec"]["template"]["metadata"]["labels"],
            "batch.kubernetes.io/job-name": name,
            constants.LABEL_CONTROLLER_UID: job["metadata"]["uid"],
        }
        uid, created = self._stamp()
        pod_name = f"{name}-{uid}"
        status: dict[str, Any] = {"phase": phase}
        status["initContainerStatuses"] = [
            {
                "name": constants.PROBE_CONTAINER,
                "state": probe if probe is not None else {"terminated": {"exitCode": 0}},
            }
        ]
        if init is not None:
            status["initContainerStatuses"].append(
                {"name": constants.TASK_CONTAINER, "state": init}
            )
        if collector is not None:
            status["containerStatuses"] = [
                {"name": constants.COLLECTOR_CONTAINER, "state": collector}
            ]
        if conditions:
            status["conditions"] = conditions
        self.pods[(ns, pod_name)] = pod = {
            "metadata": {
                "name": pod_name,
                "namespace": ns,
                "uid": uid,
                "labels": labels,
                "creationTimestamp": created,
                "ownerReferences": [
                    {"kind": "Job", "name": name, "uid": job["metadata"]["uid"], "controller": True}
                ],
            },
            "status": status,
        }
        self._touch(pod)
        self._touch(job)  # the Job controller counts its pods in the Job's status
        return pod_name

    def pods_of(self, job_name: str, namespace: str = "ns") -> list[str]:
        uid = self.jobs[(namespace, job_name)]["metadata"]["uid"]
        return [
            k[1]
            for k, p in self.pods.items()
            if p["metadata"]["labels"].get(constants.LABEL_CONTROLLER_UID) == uid
        ]

    def _drop_pods(self, job_name: str, namespace: str = "ns") -> None:
        """The Job's earlier pods, replaced by the one a move makes."""
        for pod in self.pods_of(job_name, namespace):
            del self.pods[(namespace, pod)]

    def start(self, job_name: str, namespace: str = "ns") -> None:
        job = self.jobs[(namespace, job_name)]
        job["status"] = {"active": 1, "startTime": T0}
        self._drop_pods(job_name, namespace)
        self._pod(
            job,
            "Pending",
            {"running": {"startedAt": T0}},
            {"waiting": {"reason": "PodInitializing"}},
        )

    def pending(
        self,
        job_name: str,
        namespace: str = "ns",
        probe: dict[str, Any] | None = None,
        task: dict[str, Any] | None = None,
    ) -> str:
        """A pod that has not started its task: its probe waits, or a container cannot start."""
        job = self.jobs[(namespace, job_name)]
        job["status"] = {"active": 1, "startTime": T0}
        self._drop_pods(job_name, namespace)
        return self._pod(
            job,
            "Pending",
            task if task is not None else {"waiting": {"reason": "PodInitializing"}},
            {"waiting": {"reason": "PodInitializing"}},
            probe=probe,
        )

    def evict(self, job_name: str, namespace: str = "ns") -> None:
        """The pod fails with DisruptionTarget; the Job's podFailurePolicy ignores it."""
        job = self.jobs[(namespace, job_name)]
        self._drop_pods(job_name, namespace)
        self._pod(
            job,
            "Failed",
            {"terminated": {"exitCode": 137, "reason": "Error"}},
            {"waiting": {"reason": "PodInitializing"}},
            conditions=[
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "EvictionByEvictionAPI",
                    "message": "Eviction API: evicting",
                }
            ],
        )
        job["status"] = {"active": 0, "startTime": T0}
        self._touch(job)

    def succeed(
        self,
        job_name: str,
        metrics: dict[str, float],
        namespace: str = "ns",
        message: str | None = None,
    ) -> None:
        job = self.jobs[(namespace, job_name)]
        self._drop_pods(job_name, namespace)
        self._pod(
            job,
            "Succeeded",
            {"terminated": {"exitCode": 0}},
            {
                "terminated": {
                    "exitCode": 0,
                    "message": message if message is not None else results.encode(metrics),
                }
            },
        )
        job["status"] = {
            "succeeded": 1,
            "startTime": T0,
            "completionTime": "2026-01-01T00:05:00Z",
            "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:05:00Z"}
            ],
        }
        self._touch(job)

    def fail(
        self,
        job_name: str,
        exit_code: int = 2,
        log: str = "boom",
        namespace: str = "ns",
        collector_message: str | None = None,
        reason: str = "BackoffLimitExceeded",
        probe_message: str | None = None,
    ) -> None:
        job = self.jobs[(namespace, job_name)]
        self._drop_pods(job_name, namespace)
        if probe_message is not None:
            self._pod(
                job,
                "Failed",
                {"waiting": {"reason": "PodInitializing"}},
                {"waiting": {"reason": "PodInitializing"}},
                probe={"terminated": {"exitCode": 1, "message": probe_message}},
            )
        elif collector_message is None:
            # The task printed `log` and exited; its termination message is empty, as the
            # task container's policy is File (the log is read from pods/log).
            init = {"terminated": {"exitCode": exit_code, "reason": "Error"}}
            pod = self._pod(job, "Failed", init, {"waiting": {"reason": "PodInitializing"}})
            self.logs[(namespace, pod)] = log
        else:
            self._pod(
                job,
                "Failed",
                {"terminated": {"exitCode": 0}},
                {"terminated": {"exitCode": 1, "reason": "Error", "message": collector_message}},
            )
        job["status"] = {
            "failed": 1,
            "startTime": T0,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "lastTransitionTime": "2026-01-01T00:06:00Z",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        }
        self._touch(job)

    # --- kube.Api ------------------------------------------------------------------
    def _refused(self, kind: str, body: Mapping[str, Any], dry_run: bool = False) -> None:
        answer = self.refuse(kind, body, dry_run)
        if answer is not None:
            raise kube.error_from_status(
                answer[0], json.dumps({"reason": answer[1], "message": answer[2]})
            )

    def get_evaltask(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("get_evaltask")
        self._fault("get", "EvalTask", name)
        if (namespace, name) not in self.evaltasks:
            raise kube.NotFound(404, "NotFound", f"evaltask {name} not found")
        return _sorted(self.evaltasks[(namespace, name)])

    def get_task_config(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("get_task_config")
        self._fault("get", kind, name)
        ns = "" if kind == constants.CLUSTER_TASK_CONFIG.kind else namespace
        if (kind, ns, name) not in self.task_configs:
            raise kube.NotFound(404, "NotFound", f"{kind.lower()}s {name!r} not found")
        return _sorted(self.task_configs[(kind, ns, name)])

    def list_evaltasks(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append("list_evaltasks")
        self._fault("list", "EvalTask", "")
        return [_sorted(e) for (ns, _), e in self.evaltasks.items() if ns == namespace]

    def _list(self, store: dict[tuple[str, str], dict[str, Any]], ns: str, selector: str) -> Any:
        return [_sorted(o) for (n, _), o in store.items() if n == ns and _matches(o, selector)]

    def list_evalruns(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append("list_evalruns")
        self._fault("list", "EvalRun", "")
        result: list[dict[str, Any]] = self._list(self.evalruns, namespace, selector)
        return result

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append("list_jobs")
        self._fault("list", "Job", "")
        result: list[dict[str, Any]] = self._list(self.jobs, namespace, selector)
        return result

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append("list_pods")
        self._fault("list", "Pod", "")
        result: list[dict[str, Any]] = self._list(self.pods, namespace, selector)
        return result

    def create_evalrun(self, evalrun: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("create_evalrun")
        key = (evalrun["metadata"]["namespace"], evalrun["metadata"]["name"])
        self._sent(evalrun)
        self._fault("create", "EvalRun", key[1], evalrun)
        if key in self.evalruns:
            raise kube.Conflict(409, "AlreadyExists", f"evalruns {key[1]} already exists")
        self._refused("EvalRun", evalrun)
        stored = copy.deepcopy(dict(evalrun))
        stored.pop("status", None)  # the status subresource ignores status on create
        uid, created = self._stamp()
        stored["metadata"].update(uid=uid, creationTimestamp=created)
        self.evalruns[key] = self._touch(stored)
        return _sorted(stored)

    def delete_evalrun(self, namespace: str, name: str) -> str:
        self.calls.append("delete_evalrun")
        self._fault("delete", "EvalRun", name)
        if (namespace, name) not in self.evalruns:
            raise kube.NotFound(404, "NotFound", name)
        gone = self.evalruns.pop((namespace, name))
        return kube.deleted_uid({"kind": "Status", "details": {"uid": gone["metadata"]["uid"]}})

    def patch_evalrun_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("patch_evalrun_status")
        self._sent({"status": status})
        self._fault("patch_status", "EvalRun", name, status)
        if (namespace, name) not in self.evalruns:
            raise kube.NotFound(404, "NotFound", name)
        run = self.evalruns[(namespace, name)]
        _merge(run.setdefault("status", {}), status)
        return _sorted(self._touch(run))

    def get_evalrun(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("get_evalrun")
        self._fault("get", "EvalRun", name)
        if (namespace, name) not in self.evalruns:
            raise kube.NotFound(404, "NotFound", f'evalruns "{name}" not found')
        return _sorted(self.evalruns[(namespace, name)])

    def patch_evalrun(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of the EvalRun itself (its metadata: the status is a subresource)."""
        self.calls.append("patch_evalrun")
        self._sent(patch)
        self._fault("patch", "EvalRun", name, patch)
        if (namespace, name) not in self.evalruns:
            raise kube.NotFound(404, "NotFound", f'evalruns "{name}" not found')
        run = self.evalruns[(namespace, name)]
        self._preconditions(run, patch)
        _merge(run, {k: v for k, v in patch.items() if k != "status"})
        return _sorted(self._touch(run))

    def print(self, job_name: str, text: str, namespace: str = "ns") -> None:
        """The task container of the Job's newest pod prints `text`."""
        pod = self.pods_of(job_name, namespace)[-1]
        self.logs[(namespace, pod)] = self.logs.get((namespace, pod), "") + text

    def read_pod_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str:
        """As the API server answers: 404 for a pod that is gone, 400 for a container that
        has not started; else the last lines, cut to limit_bytes from their start."""
        self.calls.append("read_pod_log")
        self._fault("log", "Pod", pod)
        found = self.pods.get((namespace, pod))
        if found is None:
            raise kube.NotFound(404, "NotFound", f'pods "{pod}" not found')
        statuses = (found["status"].get("initContainerStatuses") or []) + (
            found["status"].get("containerStatuses") or []
        )
        [state] = [c.get("state") or {} for c in statuses if c["name"] == container] or [{}]
        if "running" not in state and "terminated" not in state:
            raise kube.Refused(
                400,
                "BadRequest",
                f'container "{container}" in pod "{pod}" is waiting to start: PodInitializing',
            )
        lines = self.logs.get((namespace, pod), "").splitlines(keepends=True)
        return "".join(lines[-tail_lines:]).encode()[:limit_bytes].decode(errors="ignore")

    def create_failures(self, namespace: str, job_uid: str) -> list[str]:
        self.calls.append("list_events")
        for (ns, name), job in self.jobs.items():
            if ns == namespace and job["metadata"]["uid"] == job_uid:
                return list(self.failed_creates.get(name, []))
        return []

    def create_job(self, job: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        self.calls.append("dry_run_job" if dry_run else "create_job")
        self._sent(job)
        self._fault("create", "Job", key[1], job)
        if key in self.jobs:
            raise kube.Conflict(409, "AlreadyExists", f"jobs {key[1]} already exists")
        causes = self.reject(job)
        if causes:
            raise kube.Invalid(422, "Invalid", "Job is invalid", causes)
        self._refused("Job", job, dry_run)
        if dry_run:
            self.dry_runs.append(copy.deepcopy(dict(job)))
            return _sorted(job)
        stored = copy.deepcopy(dict(job))
        uid, created = self._stamp()
        stored["metadata"].update(uid=uid, creationTimestamp=created)
        stored["status"] = {}
        self.jobs[key] = self._touch(stored)
        return _sorted(stored)

    def delete_job(self, namespace: str, name: str) -> str:
        self.calls.append("delete_job")
        self._fault("delete", "Job", name)
        if (namespace, name) not in self.jobs:
            raise kube.NotFound(404, "NotFound", name)
        gone = self.jobs.pop((namespace, name))  # its pods stay until collect_garbage()
        return kube.deleted_uid({"kind": "Status", "details": {"uid": gone["metadata"]["uid"]}})

    def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("patch_job")
        self._sent(patch)
        self._fault("patch", "Job", name, patch)
        if (namespace, name) not in self.jobs:
            raise kube.NotFound(404, "NotFound", name)
        self._preconditions(self.jobs[(namespace, name)], patch)
        _merge(self.jobs[(namespace, name)], patch)
        return _sorted(self._touch(self.jobs[(namespace, name)]))

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("get_job")
        self._fault("get", "Job", name)
        if (namespace, name) not in self.jobs:
            raise kube.NotFound(404, "NotFound", f'jobs.batch "{name}" not found')
        return _sorted(self.jobs[(namespace, name)])

    def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("read_secret")
        self._fault("get", "Secret", name)
        if (namespace, name) not in self.secrets:
            raise kube.NotFound(404, "NotFound", name)
        return _sorted(self.secrets[(namespace, name)])

    def read_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("read_configmap")
        self._fault("get", "ConfigMap", name)
        if (namespace, name) not in self.configmaps:
            raise kube.NotFound(404, "NotFound", name)
        return _sorted(self.configmaps[(namespace, name)])

    def create_secret(self, secret: Mapping[str, Any]) -> None:
        self.calls.append("create_secret")
        key = (secret["metadata"]["namespace"], secret["metadata"]["name"])
        self._sent(secret)
        self._fault("create", "Secret", key[1], secret)
        if key in self.secrets:
            raise kube.Conflict(409, "AlreadyExists", key[1])
        self.secrets[key] = copy.deepcopy(dict(secret))

    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append("patch_secret")
        self._sent(patch)
        self._fault("patch", "Secret", name, patch)
        _merge(self.secrets[(namespace, name)], patch)

    def patch_evaltask_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("patch_status")
        self._sent({"status": status})
        self._fault("patch_status", "EvalTask", name, status)
        if (namespace, name) not in self.evaltasks:
            raise kube.NotFound(404, "NotFound", name)
        body = self.evaltasks[(namespace, name)]
        current = body.setdefault("status", {})
        for k, v in copy.deepcopy(dict(status)).items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        return _sorted(self._touch(body))

    def patch_evaltask_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> dict[str, Any]:
        self.calls.append("patch_annotations")
        self._fault("patch", "EvalTask", name, {"metadata": {"annotations": annotations}})
        if (namespace, name) not in self.evaltasks:
            raise kube.NotFound(404, "NotFound", name)
        current = self.evaltasks[(namespace, name)]["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        return _sorted(self._touch(self.evaltasks[(namespace, name)]))

    def post_event(
        self, evaltask: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        self.calls.append("post_event")
        self._fault("create", "Event", str(evaltask["metadata"]["name"]), {"reason": reason})
        self.events.append({"type": type_, "reason": reason, "message": message})


class FakeWatch:
    """What the operator's watches (kopf's indexes) hold: the fake's objects as of the last
    `sync()`. A test calls it where the watch events would have arrived, which is later
    than the writes that caused them, so a pass can see a world older than its own writes.
    Callable as a handlers.Source."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.sync()

    def sync(self, *kinds: str) -> None:
        """Show the writes so far; `kinds` ("evaltasks", "runs", "jobs", "pods"): only
        theirs, as separate watch streams that run apart."""
        kinds = kinds or ("evaltasks", "runs", "jobs", "pods")
        if "evaltasks" in kinds:
            self._evaltasks = _sorted({f"{ns}/{n}": b for (ns, n), b in self.api.evaltasks.items()})
        # What the operator's indexes keep of each (handlers.py): no more.
        stores = {
            "runs": (self.api.evalruns, cache.slim),
            "jobs": (self.api.jobs, cache.slim_job),
            "pods": (self.api.pods, lambda pod: cache.slim(pod, spec=False)),
        }
        self._children = {
            kind: [kept(o) for o in _sorted(list(store.values()))]
            if kind in kinds
            else self._children[kind]
            for kind, (store, kept) in stores.items()
        }

    def _of(self, kind: str, uid: str) -> list[dict[str, Any]]:
        return [
            o
            for o in self._children[kind]
            if (o["metadata"].get("labels") or {}).get(constants.LABEL_EVALTASK_UID) == uid
        ]

    def __call__(self, namespace: str, name: str) -> cache.Snapshot | None:
        body = self._evaltasks.get(f"{namespace}/{name}")
        if body is None:
            return None
        uid = body["metadata"]["uid"]
        return cache.Snapshot(
            body, self._of("runs", uid), self._of("jobs", uid), self._of("pods", uid)
        )
