"""The thin wrapper over the Kubernetes API that reconcile talks to.

Everything is plain dicts in the API's own (camelCase) shape, the same shape manifests.py
builds, so reconcile never sees client model classes. Client exceptions are mapped at
this boundary into a small tree:

    ApiError            anything the API server refused (status, reason, message)
     +-- NotFound       404: the object is gone
     +-- Conflict       409: it already exists, or a stale write
     +-- Refused        400, 403, 413, other 4xx: this object will not be accepted as it is
     |    +-- Invalid   422: the object was rejected; `causes` name the fields
     +-- Transient      429, 5xx or no answer: try again later

Every call has a timeout (REQUEST_TIMEOUT), so a hung connection cannot wedge a pass.

Tests use a fake with the same methods (tests/handler/fake_api.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Final, Protocol
from urllib.parse import quote

from eval_operator import constants, health

FIELD_MANAGER: Final = "eval-operator"
# (connect, read) seconds for every API call.
REQUEST_TIMEOUT: Final = (10.0, 60.0)


class ApiError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, causes: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = causes or []


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Refused(ApiError):
    """Admission said no: a quota, a policy, a webhook, RBAC, a body too large."""


class Invalid(Refused):
    pass


class Transient(ApiError):
    pass


def error_from_status(status: int, body: str) -> ApiError:
    """Map an HTTP status and a metav1.Status body to our error tree."""
    try:
        doc = json.loads(body) if body else {}
    except json.JSONDecodeError:
        doc = {"message": body}
    reason = str(doc.get("reason", ""))
    message = str(doc.get("message", "")) or body
    causes = [
        {"field": str(c.get("field", "")), "message": str(c.get("message", ""))}
        for c in (doc.get("details") or {}).get("causes") or []
    ]
    kind: type[ApiError]
    if status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 422:
        kind = Invalid
    elif status == 429 or status >= 500 or status == 0:
        kind = Transient
    elif 400 <= status < 500:
        kind = Refused
    else:
        kind = ApiError
    return kind(status, reason, message, causes)


class Api(Protocol):
    """The calls reconcile makes; each raises ApiError subclasses."""

    def get_evaltask(self, namespace: str, name: str) -> dict[str, Any]: ...
    # An EvalTaskConfig in `namespace`, or a ClusterEvalTaskConfig (namespace unused).
    def get_task_config(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...
    def list_evaltasks(self, namespace: str) -> list[dict[str, Any]]: ...
    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def list_evalruns(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def create_evalrun(self, evalrun: Mapping[str, Any]) -> dict[str, Any]: ...
    def delete_evalrun(self, namespace: str, name: str) -> str: ...
    def patch_evalrun_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]: ...
    def create_failures(self, namespace: str, job_uid: str) -> list[str]: ...
    def read_pod_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str: ...
    def create_job(self, job: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]: ...
    def delete_job(self, namespace: str, name: str) -> str: ...
    def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]: ...
    def read_secret(self, namespace: str, name: str) -> dict[str, Any]: ...
    def read_configmap(self, namespace: str, name: str) -> dict[str, Any]: ...
    def create_secret(self, secret: Mapping[str, Any]) -> None: ...
    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...
    def patch_evaltask_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]: ...
    def patch_evaltask_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> dict[str, Any]: ...
    def post_event(
        self, evaltask: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None: ...
    # A create's 409: who holds the name (reconcile adopts, replaces or reports it).
    def get_evalrun(self, namespace: str, name: str) -> dict[str, Any]: ...
    def get_job(self, namespace: str, name: str) -> dict[str, Any]: ...
    def patch_evalrun(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...


def task_config_path(kind: str, namespace: str, name: str) -> str:
    """Where a configRef's config is: namespaced, or cluster-wide."""
    base = f"/apis/{constants.GROUP}/{constants.VERSION}"
    if kind == constants.CLUSTER_TASK_CONFIG.kind:
        return f"{base}/{constants.CLUSTER_TASK_CONFIG.plural}/{_q(name)}"
    return f"{base}/namespaces/{_q(namespace)}/{constants.TASK_CONFIG.plural}/{_q(name)}"


def deleted_uid(answer: Mapping[str, Any]) -> str:
    """The uid of what a DELETE removed: a Status names it in details, an object (one
    that waits for finalizers) in its metadata."""
    where = answer.get("details") or answer.get("metadata") or {}
    return str(where.get("uid") or "")


def _q(segment: str) -> str:
    """A path segment from user data, quoted whole: a name such as '../../kube-system/x'
    stays one segment and never walks the URL to another namespace's objects."""
    return quote(segment, safe="")


class KubeApi:
    """Api over the official client, speaking JSON to avoid its model classes."""

    def __init__(self, client: Any) -> None:
        # `client` is a kubernetes.client.ApiClient; imported lazily so pure modules and
        # unit tests never load the kubernetes package through us.
        self._client = client

    def _call(self, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """_call_text's answer, parsed: the API server answers JSON ({} for nothing)."""
        text = self._call_text(method, path, *args, **kwargs)
        result: dict[str, Any] = json.loads(text) if text else {}
        return result

    def _call_text(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> str:
        from kubernetes.client.exceptions import ApiException

        method, url, headers, payload, post = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Accept": accept, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            try:
                response = self._client.call_api(
                    method, url, headers, payload, post, _request_timeout=REQUEST_TIMEOUT
                )
                data = response.read()
            except ApiException as e:
                raise error_from_status(int(e.status or 0), str(e.body or e.reason)) from None
            except OSError as e:  # connection refused/reset, DNS, TLS
                raise Transient(0, "Unreachable", str(e)) from None
            except Exception as e:
                # urllib3 raises its own (non-OSError) errors for timeouts and protocol issues.
                if type(e).__module__.startswith("urllib3"):
                    raise Transient(0, "Unreachable", str(e)) from None
                raise
        except Transient as e:
            health.REQUESTS.failed("operator", f"{method} {path}: {e}")
            raise
        except ApiError:
            health.REQUESTS.answered("operator")  # it answered, if only to refuse
            raise
        health.REQUESTS.answered("operator")
        text = (
            data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data or "")
        )
        if not 200 <= response.status < 300:
            raise error_from_status(response.status, text)
        return text

    @staticmethod
    def _evaltask_path(namespace: str, name: str) -> str:
        return (
            f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{_q(namespace)}/"
            f"{constants.EVALTASK.plural}/{_q(name)}"
        )

    def get_evaltask(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", self._evaltask_path(namespace, name))

    def get_task_config(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", task_config_path(kind, namespace, name))

    def list_evaltasks(self, namespace: str) -> list[dict[str, Any]]:
        doc = self._call(
            "GET",
            f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{_q(namespace)}/"
            f"{constants.EVALTASK.plural}",
        )
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        doc = self._call(
            "GET",
            f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs",
            query=[("labelSelector", selector)],
        )
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        doc = self._call(
            "GET", f"/api/v1/namespaces/{_q(namespace)}/pods", query=[("labelSelector", selector)]
        )
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    @staticmethod
    def _evalruns_path(namespace: str) -> str:
        return (
            f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{_q(namespace)}/"
            f"{constants.EVALRUN.plural}"
        )

    def list_evalruns(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        doc = self._call("GET", self._evalruns_path(namespace), query=[("labelSelector", selector)])
        items: list[dict[str, Any]] = doc.get("items") or []
        return items

    def create_evalrun(self, evalrun: Mapping[str, Any]) -> dict[str, Any]:
        namespace = evalrun["metadata"]["namespace"]
        return self._call(
            "POST",
            self._evalruns_path(namespace),
            body=dict(evalrun),
            query=[("fieldManager", FIELD_MANAGER)],
        )

    def _merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        # A merge patch replaces lists whole (what runs and conditions need), and one that
        # names metadata.resourceVersion is refused with 409 when the object changed since.
        return self._call("PATCH", path, body=body, content_type="application/merge-patch+json")

    def _delete(self, path: str) -> str:
        # Background: the object goes at once, the garbage collector removes dependents.
        return deleted_uid(self._call("DELETE", path, body={"propagationPolicy": "Background"}))

    def delete_evalrun(self, namespace: str, name: str) -> str:
        return self._delete(f"{self._evalruns_path(namespace)}/{_q(name)}")

    def patch_evalrun_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._merge_patch(
            f"{self._evalruns_path(namespace)}/{_q(name)}/status", {"status": dict(status)}
        )

    def read_pod_log(
        self, namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int
    ) -> str:
        """The end of a container's log (pods/log): its last lines, at most so many bytes."""
        return self._call_text(
            "GET",
            f"/api/v1/namespaces/{_q(namespace)}/pods/{_q(pod)}/log",
            query=[
                ("container", container),
                ("tailLines", str(tail_lines)),
                ("limitBytes", str(limit_bytes)),
            ],
            # The log is text, but the API server takes only its API media types or */*
            # here (text/plain: 406 Not Acceptable).
            accept="*/*",
        )

    def create_failures(self, namespace: str, job_uid: str) -> list[str]:
        """The Job controller's FailedCreate event messages for one Job, oldest first."""
        doc = self._call(
            "GET",
            f"/api/v1/namespaces/{_q(namespace)}/events",
            query=[("fieldSelector", f"involvedObject.uid={job_uid},reason=FailedCreate")],
        )
        events = sorted(
            doc.get("items") or [],
            key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
        )
        return [str(e.get("message", "")) for e in events]

    def create_job(self, job: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        namespace = job["metadata"]["namespace"]
        query = [("fieldManager", FIELD_MANAGER)] + ([("dryRun", "All")] if dry_run else [])
        return self._call(
            "POST", f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs", body=dict(job), query=query
        )

    def delete_job(self, namespace: str, name: str) -> str:
        return self._delete(f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}")

    def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._merge_patch(
            f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs/{_q(name)}", dict(patch)
        )

    def read_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/namespaces/{_q(namespace)}/secrets/{_q(name)}")

    def read_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/namespaces/{_q(namespace)}/configmaps/{_q(name)}")

    def create_secret(self, secret: Mapping[str, Any]) -> None:
        namespace = secret["metadata"]["namespace"]
        self._call("POST", f"/api/v1/namespaces/{_q(namespace)}/secrets", body=dict(secret))

    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self._merge_patch(f"/api/v1/namespaces/{_q(namespace)}/secrets/{_q(name)}", dict(patch))

    def patch_evaltask_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._merge_patch(
            self._evaltask_path(namespace, name) + "/status", {"status": dict(status)}
        )

    def patch_evaltask_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> dict[str, Any]:
        return self._merge_patch(
            self._evaltask_path(namespace, name), {"metadata": {"annotations": dict(annotations)}}
        )

    def post_event(
        self, evaltask: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        from datetime import UTC, datetime

        meta = evaltask["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # Named as kubectl's events are, <object>.<unique hex>; a generateName
            # ending in "." is refused by the API server.
            "metadata": {
                "name": f"{meta['name'][:200]}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "eventTime": now,
            "type": type_,
            "reason": reason,
            "note": message[:1024],
            "action": "Reconcile",
            "reportingController": f"{constants.GROUP}/eval-operator",
            "reportingInstance": "eval-operator",
            "regarding": {
                "apiVersion": constants.API_VERSION,
                "kind": constants.EVALTASK.kind,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
        }
        self._call(
            "POST", f"/apis/events.k8s.io/v1/namespaces/{_q(meta['namespace'])}/events", body=event
        )

    # One object by name, read by a list with a field selector: `list` is a verb the
    # operator has anyway, so a 409's holder is read with no `get` granted for it.
    def get_evalrun(self, namespace: str, name: str) -> dict[str, Any]:
        return self._one(self._evalruns_path(namespace), name)

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._one(f"/apis/batch/v1/namespaces/{_q(namespace)}/jobs", name)

    def _one(self, collection: str, name: str) -> dict[str, Any]:
        items = self._call("GET", collection, query=[("fieldSelector", f"metadata.name={name}")])
        found: list[dict[str, Any]] = items.get("items") or []
        if not found:
            raise NotFound(404, "NotFound", f"{name!r} not found")
        return found[0]

    def patch_evalrun(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self._merge_patch(f"{self._evalruns_path(namespace)}/{_q(name)}", dict(patch))
