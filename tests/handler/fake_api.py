"""An in-memory stand-in for kube.Api, plus a few Job-controller moves for tests.

It keeps objects as the API would return them (plain dicts) and records every write,
so tests assert on what reconcile asked the API to do.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from eval_operator import constants, kube
from eval_runner import results

T0 = "2026-01-01T00:00:00Z"


def _matches(obj: Mapping[str, Any], selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in selector.split(","):
        key, value = term.split("=", 1)
        if labels.get(key) != value:
            return False
    return True


class FakeApi:
    def __init__(self) -> None:
        self.evaltasks: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, str]] = []
        self.calls: list[str] = []
        self.dry_runs: list[dict[str, Any]] = []
        # Returns a list of causes ({field, message}) for a Job the "server" rejects.
        self.reject: Callable[[Mapping[str, Any]], list[dict[str, str]]] = lambda job: []
        self._uids = itertools.count(1)

    # --- setup helpers -------------------------------------------------------------
    def add_evaltask(
        self,
        name: str,
        spec: dict[str, Any],
        namespace: str = "ns",
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": constants.API_VERSION,
            "kind": constants.KIND,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{name}",
                "generation": 1,
                "annotations": annotations or {},
            },
            "spec": spec,
        }
        self.evaltasks[(namespace, name)] = body
        return body

    def edit_spec(self, name: str, spec: dict[str, Any], namespace: str = "ns") -> None:
        body = self.evaltasks[(namespace, name)]
        body["spec"] = spec
        body["metadata"]["generation"] += 1

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

    def status(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        status: dict[str, Any] = self.evaltasks[(namespace, name)].get("status") or {}
        return status

    def job_names(self) -> list[str]:
        return sorted(name for (_, name) in self.jobs)

    # --- Job controller moves --------------------------------------------------------
    def _pod(
        self,
        job: dict[str, Any],
        phase: str,
        init: dict[str, Any] | None,
        collector: dict[str, Any] | None,
    ) -> None:
        name = job["metadata"]["name"]
        ns = job["metadata"]["namespace"]
        labels = {
            **job["spec"]["template"]["metadata"]["labels"],
            "batch.kubernetes.io/job-name": name,
        }
        pod_name = f"{name}-{next(self._uids)}"
        status: dict[str, Any] = {"phase": phase}
        if init is not None:
            status["initContainerStatuses"] = [{"name": constants.TASK_CONTAINER, "state": init}]
        if collector is not None:
            status["containerStatuses"] = [
                {"name": constants.COLLECTOR_CONTAINER, "state": collector}
            ]
        self.pods[(ns, pod_name)] = {
            "metadata": {
                "name": pod_name,
                "namespace": ns,
                "labels": labels,
                "creationTimestamp": T0,
            },
            "status": status,
        }

    def _drop_pods(self, job_name: str) -> None:
        """What the Job controller and garbage collector do to a Job's old pods."""
        for key in [
            k
            for k, p in self.pods.items()
            if p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job_name
        ]:
            del self.pods[key]

    def start(self, job_name: str, namespace: str = "ns") -> None:
        job = self.jobs[(namespace, job_name)]
        job["status"] = {"active": 1, "startTime": T0}
        self._pod(
            job,
            "Pending",
            {"running": {"startedAt": T0}},
            {"waiting": {"reason": "PodInitializing"}},
        )

    def succeed(
        self,
        job_name: str,
        metrics: dict[str, float],
        namespace: str = "ns",
        message: str | None = None,
    ) -> None:
        job = self.jobs[(namespace, job_name)]
        self._drop_pods(job_name)
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

    def fail(
        self,
        job_name: str,
        exit_code: int = 2,
        log: str = "boom",
        namespace: str = "ns",
        collector_message: str | None = None,
        reason: str = "BackoffLimitExceeded",
    ) -> None:
        job = self.jobs[(namespace, job_name)]
        self._drop_pods(job_name)
        if collector_message is None:
            init = {"terminated": {"exitCode": exit_code, "reason": "Error", "message": log}}
            self._pod(job, "Failed", init, {"waiting": {"reason": "PodInitializing"}})
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

    # --- kube.Api ------------------------------------------------------------------
    def get_evaltask(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("get_evaltask")
        if (namespace, name) not in self.evaltasks:
            raise kube.NotFound(404, "NotFound", f"evaltask {name} not found")
        return copy.deepcopy(self.evaltasks[(namespace, name)])

    def list_evaltasks(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append("list_evaltasks")
        return [copy.deepcopy(e) for (ns, _), e in self.evaltasks.items() if ns == namespace]

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append("list_jobs")
        return [
            copy.deepcopy(j)
            for (ns, _), j in self.jobs.items()
            if ns == namespace and _matches(j, selector)
        ]

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self.calls.append("list_pods")
        return [
            copy.deepcopy(p)
            for (ns, _), p in self.pods.items()
            if ns == namespace and _matches(p, selector)
        ]

    def create_job(self, job: Mapping[str, Any], dry_run: bool = False) -> None:
        key = (job["metadata"]["namespace"], job["metadata"]["name"])
        self.calls.append("dry_run_job" if dry_run else "create_job")
        if key in self.jobs:
            raise kube.Conflict(409, "AlreadyExists", f"jobs {key[1]} already exists")
        causes = self.reject(job)
        if causes:
            raise kube.Invalid(422, "Invalid", "Job is invalid", causes)
        if dry_run:
            self.dry_runs.append(copy.deepcopy(dict(job)))
            return
        stored = copy.deepcopy(dict(job))
        stored["status"] = {}
        self.jobs[key] = stored

    def delete_job(self, namespace: str, name: str) -> None:
        self.calls.append("delete_job")
        if (namespace, name) not in self.jobs:
            raise kube.NotFound(404, "NotFound", name)
        del self.jobs[(namespace, name)]
        self._drop_pods(name)

    def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.calls.append("patch_job")
        job = self.jobs[(namespace, name)]
        annotations = job["metadata"].setdefault("annotations", {})
        for k, v in (patch.get("metadata", {}).get("annotations") or {}).items():
            if v is None:
                annotations.pop(k, None)
            else:
                annotations[k] = v
        job["spec"].update(patch.get("spec", {}))

    def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("read_secret")
        if (namespace, name) not in self.secrets:
            raise kube.NotFound(404, "NotFound", name)
        return copy.deepcopy(self.secrets[(namespace, name)])

    def read_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append("read_configmap")
        if (namespace, name) not in self.configmaps:
            raise kube.NotFound(404, "NotFound", name)
        return copy.deepcopy(self.configmaps[(namespace, name)])

    def apply_secret(self, secret: Mapping[str, Any]) -> None:
        self.calls.append("apply_secret")
        key = (secret["metadata"]["namespace"], secret["metadata"]["name"])
        self.secrets[key] = copy.deepcopy(dict(secret))

    def patch_evaltask_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.calls.append("patch_status")
        body = self.evaltasks[(namespace, name)]
        current = body.setdefault("status", {})
        for k, v in copy.deepcopy(dict(status)).items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v

    def patch_evaltask_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        self.calls.append("patch_annotations")
        current = self.evaltasks[(namespace, name)]["metadata"].setdefault("annotations", {})
        for k, v in annotations.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v

    def post_event(
        self, evaltask: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        self.calls.append("post_event")
        self.events.append({"type": type_, "reason": reason, "message": message})
