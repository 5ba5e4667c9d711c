"""The Helm chart on the real control plane: the operator's permissions proven, not asserted.

`helm install` puts the chart's Deployment into the local control plane; the local node runs
its pod (image eval-operator/operator -> `python -m eval_operator`) with the pod's
ServiceAccount token where in-cluster config reads it, so the operator has exactly the
chart's permissions. With them it completes a multi-run EvalTask, with no 403 in its log.
Then every verb of every rule of the ClusterRole is taken away in turn (the ClusterRole is
replaced, the operator's pod restarted) and the test shows what breaks: a 403 in the
operator's log naming that verb and resource, and what a user would see.

Verbs whose absence only shows later are proven beside the rest, in releases of their own:
- watch on jobs and pods: kopf's watcher retries the 403 nine times (about 55 s), then gives
  up: the operator exits and its pod restarts, again and again, or runs on without that
  watch. Shown with namespaced releases (the same rules, rendered into a Role) so they can
  run alongside the other tests.
- list and watch on CRDs: kopf follows CRDs to serve EvalTasks whose CRD appears after the
  operator started (a CRD applied with the operator, or re-created).

This module runs on a cluster of its own (the second local network: its own control plane,
kubelet and containerd), so that deleting and re-creating the CRD or a ClusterRole that
serves every namespace touches no other module's work. The operator runs from the image
built from operator/Dockerfile under its ServiceAccount. The local cluster has no kube-proxy,
so the `kubernetes` Service does not route: each release is given the API server's address
with `extraEnv` (KUBERNETES_SERVICE_HOST/PORT), as on any cluster without a Service proxy.
The operator's /healthz and /metrics are reached at its pod's address.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from localkube import realnode
from localkube.cluster import ROOT, LocalCluster
from localkube.controlplane import free_port
from localkube.mockmodel import MockModel
from tests.e2e.support import Api, create_namespace, task, wait_for

pytestmark = pytest.mark.e2e
CHART = ROOT / "charts" / "eval-operator"
CHART_CRD = CHART / "crds" / "evaltask.yaml"
CRD_NAME = "evaltasks.evaloperator.io"
TOKEN = "Bearer rbac-e2e-token"
ROTATED = "Bearer rbac-e2e-rotated"
# How long an EvalTask must stay untouched to count as "not progressing": with every rule in
# place the same EvalTask succeeds in about 1.5 s.
QUIET_SECONDS = 3.0
# The liveness probe restarts an operator whose watch is refused within about 80 s (10 s
# of failures, then 3 failed probes 20 s apart); the margin covers a slow pod start.
GIVE_UP_SECONDS = 180.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """This module's own cluster, with no operator but the chart's (see the docstring)."""
    missing = realnode.environment_ok()
    assert missing is None, f"the real node cannot run here: {missing}"
    the_cluster = LocalCluster(tmp_path_factory.mktemp("helm"), network=realnode.SECOND)
    try:
        yield the_cluster.start(operator=False)
    finally:
        the_cluster.stop()


@pytest.fixture(scope="module")
def api_client(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api
    api.close()


class Release:
    """One `helm install` of the chart, and its operator pod."""

    def __init__(self, cluster: LocalCluster, name: str, watch: list[str] | None = None) -> None:
        self.cluster = cluster
        self.name = name
        self.namespace = f"{name}-system"
        self.watch = watch or []
        self.port = free_port()
        self.fullname = f"{name}-eval-operator"
        self.account = f"system:serviceaccount:{self.namespace}:{self.fullname}"
        self.selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/component=operator"
        self.pod = ""
        self.pod_ip = ""
        self.notes = ""

    def install(self, values_dir: Path, wait: bool = False) -> None:
        for namespace in (self.namespace, *self.watch):
            self.cluster.kubectl("create", "namespace", namespace)
        values = values_dir / f"{self.name}.json"  # JSON is YAML
        api_server = urllib.parse.urlsplit(self.cluster.control_plane.server)
        values.write_text(
            json.dumps(
                {
                    "metrics": {"port": self.port},
                    # One replica: each scenario reads its one operator's log. Leader
                    # election stays on, so its Lease's rules are proven here too; two
                    # replicas are proven in tests/e2e/test_leader.py.
                    "replicaCount": 1,
                    "watchNamespaces": self.watch,
                    # Progress reads soon after a run starts, so the test need not wait.
                    "progressIntervalSeconds": 1,
                    "extraEnv": [
                        {"name": "KUBERNETES_SERVICE_HOST", "value": api_server.hostname},
                        {"name": "KUBERNETES_SERVICE_PORT", "value": str(api_server.port)},
                    ],
                }
            )
        )
        wait_args = ["--wait", "--timeout", "120s"] if wait else []
        out = self.cluster.helm(
            "install", self.name, str(CHART), "-n", self.namespace, "-f", str(values), *wait_args
        )
        self.notes = out.stdout[out.stdout.index("NOTES:") :]

    def pods(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "get", "pods", "-n", self.namespace, "-l", self.selector, "-o", "json"
        )
        items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return items

    def stop(self) -> None:
        self.cluster.kubectl(
            "scale", "-n", self.namespace, f"deploy/{self.fullname}", "--replicas=0"
        )
        # Within the pod's termination grace period (30 s), and then some.
        wait_for(lambda: not self.pods(), 60, f"the pods of {self.name} to go")

    def start(self, healthy: bool = True) -> None:
        self.cluster.kubectl(
            "scale", "-n", self.namespace, f"deploy/{self.fullname}", "--replicas=1"
        )
        self.wait_ready(healthy)

    def wait_ready(self, healthy: bool = True) -> None:
        """Until its one pod runs and serves /healthz at the pod's address (`healthy`
        False: a release whose watch is refused, which /healthz reports soon)."""
        self.pod = wait_for(self._running_pod, 60, f"a running pod of {self.name}")
        [pod] = [p for p in self.pods() if p["metadata"]["name"] == self.pod]
        self.pod_ip = pod["status"]["podIP"]
        if healthy:
            wait_for(self._healthy, 60, f"{self.name}'s /healthz")

    def restart(self, healthy: bool = True) -> None:
        self.stop()
        self.start(healthy)

    def _running_pod(self) -> str | None:
        running = [
            p["metadata"]["name"]
            for p in self.pods()
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return running[0] if len(running) == 1 else None

    def unhealthy(self) -> str | None:
        """What /healthz says while it fails; None while it answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                return None
        except urllib.error.HTTPError as error:
            return str(error.read().decode(errors="replace"))
        except OSError:
            return None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    @property
    def url(self) -> str:
        """Where the operator's pod serves /healthz and /metrics."""
        return f"http://{self.pod_ip}:{self.port}"

    def log(self) -> str:
        """The operator's log: its container's previous run, if it restarted (a restarted
        container starts a new log; kubelet keeps the last one), then the current run."""
        pod = f"pod/{self.pod or self._running_pod() or ''}"
        where = ["-n", self.namespace, pod]
        previous = self.cluster.kubectl("logs", "--previous", *where, check=False).stdout
        return previous + self.cluster.kubectl("logs", *where, check=False).stdout

    def wait_log(self, pattern: str, timeout: float = 20) -> str:
        regex = re.compile(pattern)
        return wait_for(
            lambda: next((line for line in self.log().splitlines() if regex.search(line)), None),
            timeout,
            f"{pattern!r} in the log of {self.name}",
            interval=0.3,
        )

    def rules(
        self, kind: str = "clusterrole", namespace: str | None = None, name: str = ""
    ) -> list[dict[str, Any]]:
        where = ["-n", namespace] if namespace else []
        out = self.cluster.kubectl("get", kind, name or self.fullname, *where, "-o", "json")
        rules: list[dict[str, Any]] = json.loads(out.stdout)["rules"]
        return rules

    def set_rules(
        self,
        rules: list[dict[str, Any]],
        kind: str = "clusterrole",
        namespace: str | None = None,
        name: str = "",
    ) -> None:
        where = ["-n", namespace] if namespace else []
        patch = [{"op": "replace", "path": "/rules", "value": rules}]
        self.cluster.kubectl(
            "patch", kind, name or self.fullname, *where, "--type=json", "-p", json.dumps(patch)
        )

    def refusals(self) -> list[str]:
        """Log lines where the API server refused the operator for want of a permission (other
        403s, such as writing into a namespace being deleted, are not about RBAC)."""
        return [line for line in self.log().splitlines() if f'User "{self.account}" cannot' in line]

    def restart_count(self) -> int:
        pods = self.pods()
        statuses = [s for p in pods for s in p["status"].get("containerStatuses") or []]
        return sum(int(s.get("restartCount", 0)) for s in statuses)


def without(
    rules: list[dict[str, Any]], group: str, resource: str, verb: str
) -> list[dict[str, Any]]:
    """The rules with one verb of one resource taken away (and a rule left empty dropped)."""
    kept = []
    for rule in copy.deepcopy(rules):
        if group in rule["apiGroups"] and resource in rule["resources"]:
            assert verb in rule["verbs"], f"{verb} {resource} is not in the rules"
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
        if rule["verbs"]:
            kept.append(rule)
    return kept


def forbidden(verb: str, resource: str, group: str, namespace: str | None) -> str:
    """The API server's words for an RBAC refusal, as a regular expression."""
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return re.escape(f'cannot {verb} resource "{resource}" in API group "{group}" {where}')


@dataclass
class Chart:
    cluster: LocalCluster
    api_client: client.ApiClient
    all: Release  # every namespace: the ClusterRole under test
    scoped: Release  # watchNamespaces: [scoped-a]
    crashing: dict[str, Release]  # resource -> a namespaced release without watch on it
    full_rules: list[dict[str, Any]]
    model: MockModel

    def namespace(self) -> Api:
        """A fresh namespace for one scenario, with the Secret and ConfigMap it references."""
        name = f"rbac-{uuid.uuid4().hex[:8]}"
        return make_namespace(self.api_client, name)


def apply_chart_crd(cluster: LocalCluster) -> None:
    """Apply the chart's CRD and wait until discovery serves EvalTasks; then touch the CRD.

    kopf rescans discovery on each CRD event, and the last one (Established) can come before
    discovery lists the new resource: then kopf never serves it (2 re-creations in 8 here).
    The touch is one more event, after discovery is complete, for every operator that
    watches CRDs; one that cannot watch them does not see it.
    """
    cluster.kubectl("apply", "--server-side", "-f", str(CHART_CRD))

    def served() -> bool:
        out = cluster.kubectl("get", "--raw", "/apis/evaloperator.io/v1alpha1", check=False)
        resources = json.loads(out.stdout or "{}").get("resources", [])
        return any(r["name"] == "evaltasks" and "patch" in r["verbs"] for r in resources)

    wait_for(served, 30, "discovery to serve evaltasks")
    touch = f"e2e.evaloperator.io/touched={uuid.uuid4().hex}"
    cluster.kubectl("annotate", "crd", CRD_NAME, touch, "--overwrite")


def make_namespace(api_client: client.ApiClient, name: str) -> Api:
    api = create_namespace(api_client, name, TOKEN)
    api.configmap("eval-config", {"dataset": "rbac"})
    return api


@pytest.fixture(scope="module")
def chart(
    cluster: LocalCluster, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chart]:
    values_dir = tmp_path_factory.mktemp("values")
    crashing = {
        r: Release(cluster, f"crash-{r}", watch=[f"crash-{r}"])
        for r in ("jobs", "pods", "evalruns")
    }
    all_namespaces = Release(cluster, "rbac")
    scoped = Release(cluster, "scoped", watch=["scoped-a"])
    model = MockModel.answering("m", {"alpha": "right"}, token=TOKEN, host=host(cluster))
    model.__enter__()
    try:
        # The slow proofs first, so their clocks start early.
        for resource, release in crashing.items():
            release.install(values_dir)
            [namespace] = release.watch
            group = {"jobs": "batch", "pods": "", "evalruns": "evaloperator.io"}[resource]
            release.set_rules(
                without(release.rules("role", namespace), group, resource, "watch"),
                "role",
                namespace,
            )
            release.restart(healthy=False)
        scoped.install(values_dir)
        all_namespaces.install(values_dir, wait=True)
        all_namespaces.wait_ready()
        yield Chart(
            cluster,
            api_client,
            all_namespaces,
            scoped,
            crashing,
            all_namespaces.rules(),
            model,
        )
    finally:
        # The cluster goes with the module, and what runs on it.
        model.__exit__()


def host(cluster: LocalCluster) -> str:
    """Where this cluster's pods reach model services on this machine."""
    return cluster.network.node_ip


# --- what the operator is asked to do --------------------------------------------------------


def basic_spec(url: str) -> dict[str, Any]:
    """Two models (auth from a Secret, and a literal value) x one task reading a ConfigMap."""
    alpha = task("alpha", 0.5)
    alpha["env"].append(
        {
            "name": "DATASET",
            "valueFrom": {"configMapKeyRef": {"name": "eval-config", "key": "dataset"}},
        }
    )
    return {
        "probe": False,
        "models": [
            {
                "name": "m1",
                "url": url,
                "auth": {"secretRef": {"name": "model-key", "key": "token"}},
            },
            {"name": "m2", "url": url, "auth": {"value": TOKEN}},
        ],
        "tasks": [alpha],
    }


def one_run(url: str, **env: str | float) -> dict[str, Any]:
    return {
        "probe": False,
        "models": [{"name": "m1", "url": url, "auth": {"value": TOKEN}}],
        "tasks": [task("alpha", 0.1, **env)],
    }


def basic(api: Api, url: str) -> None:
    api.create_evaltask("basic", basic_spec(url))


def suspend(api: Api, url: str) -> None:
    """A long run, then `spec.suspend: true`: the operator suspends its Job (patch)."""
    api.create_evaltask("suspend", one_run(url, SLEEP=120))
    wait_for(lambda: run_state(api, "suspend") == "Running", 30, "the run to start")
    api.patch_spec("suspend", {"suspend": True})


def progress(api: Api, url: str) -> None:
    """A run that prints its progress and runs on: the operator reads its log (pods/log)."""
    api.create_evaltask("progress", one_run(url, SLEEP=30, PROGRESS="3/10"))


def edit(api: Api, url: str) -> None:
    """A finished run, then an edit of its task: the operator deletes the old Job."""
    api.create_evaltask("edit", one_run(url))
    api.wait_phase("edit", ("Succeeded",), timeout=30)
    api.patch_spec("edit", {"tasks": [task("alpha", 0.9)]})


def rotate(api: Api, url: str) -> None:
    """A finished run, then a new literal auth value: the operator patches its Secret."""
    api.create_evaltask("rotate", one_run(url))
    api.wait_phase("rotate", ("Succeeded",), timeout=30)
    spec = one_run(url)
    spec["models"][0]["auth"]["value"] = ROTATED
    api.patch_spec("rotate", {"models": spec["models"]})


def rerun(api: Api, url: str) -> None:
    """A finished run, then `evaloperator.io/rerun=all`: the operator removes the annotation
    (a patch of the EvalTask) and runs it again."""
    api.create_evaltask("rerun", one_run(url))
    api.wait_phase("rerun", ("Succeeded",), timeout=30)
    RERUN_BEFORE[api.ns] = api.run("rerun", "m1", "alpha")["uid"]
    api.custom.patch_namespaced_custom_object(
        "evaloperator.io",
        "v1alpha1",
        api.ns,
        "evaltasks",
        "rerun",
        {"metadata": {"annotations": {"evaloperator.io/rerun": "all"}}},
    )


def no_service_account(api: Api, url: str) -> None:
    """A run whose pod cannot be created: the Job controller says why in an event."""
    spec = one_run(url)
    spec["template"] = {"serviceAccountName": "nobody"}
    api.create_evaltask("no-sa", spec)


def orphan(api: Api, url: str) -> None:
    """A finished run; its EvalTask deleted with `--cascade=orphan` and applied again: the
    operator adopts the record left behind (a patch of the EvalRun) instead of running it
    again."""
    spec = one_run(url)
    spec["models"][0]["auth"] = {"secretRef": {"name": "model-key", "key": "token"}}
    api.create_evaltask("orphan", spec)
    api.wait_phase("orphan", ("Succeeded",), timeout=30)
    ORPHAN_BEFORE[api.ns] = api.run("orphan", "m1", "alpha")["uid"]
    api.custom.delete_namespaced_custom_object(
        "evaloperator.io",
        "v1alpha1",
        api.ns,
        "evaltasks",
        "orphan",
        body=client.V1DeleteOptions(propagation_policy="Orphan"),
    )

    def orphaned() -> bool:
        gone = not api.custom.list_namespaced_custom_object(
            "evaloperator.io", "v1alpha1", api.ns, "evaltasks"
        )["items"]
        return gone and not any(
            (r.get("metadata") or {}).get("ownerReferences")
            for r in api.custom.list_namespaced_custom_object(
                "evaloperator.io", "v1alpha1", api.ns, "evalruns"
            )["items"]
        )

    wait_for(orphaned, 30, "the EvalTask gone, its EvalRun left without an owner")
    api.create_evaltask("orphan", spec)


def configs(api: Api, url: str) -> None:
    """Two tasks from saved task configurations: an EvalTaskConfig in the namespace and a
    ClusterEvalTaskConfig (named after the namespace: it outlives it)."""
    alpha, beta = (
        {k: v for k, v in t.items() if k != "name"}
        for t in (task("alpha", 0.5), task("beta", 0.75))
    )
    api.create_task_config("alpha-set", alpha)
    api.create_task_config(f"{api.ns}-beta", beta, cluster=True)
    spec = one_run(url)
    spec["tasks"] = [
        {"name": "alpha", "configRef": {"name": "alpha-set"}},
        {"name": "beta", "configRef": {"kind": "ClusterEvalTaskConfig", "name": f"{api.ns}-beta"}},
    ]
    api.create_evaltask("configs", spec)


def run_state(api: Api, name: str) -> str:
    runs = api.status(name).get("runs") or [{}]
    return str(runs[0].get("state", ""))


def operator_events(api: Api, name: str) -> list[str]:
    """Reasons of the operator's events about an EvalTask (raw JSON: the client's model class
    refuses the job controller's events, which have no eventTime)."""
    path = f"/apis/events.k8s.io/v1/namespaces/{api.ns}/events"
    response = api.core.api_client.call_api(
        *api.core.api_client.param_serialize("GET", path, auth_settings=["BearerToken"])
    )
    events = json.loads(response.read())["items"]
    return [
        e["reason"]
        for e in events
        if e["regarding"].get("name") == name
        and e.get("reportingController") == "evaloperator.io/eval-operator"
    ]


def owned_secret_value(api: Api, evaltask: str) -> str:
    [secret] = [
        s
        for s in api.core.list_namespaced_secret(api.ns).items
        if any(
            o.kind == "EvalTask" and o.name == evaltask for o in s.metadata.owner_references or []
        )
    ]
    [value] = secret.data.values()
    return base64.b64decode(value).decode()


def jobs_of(api: Api, evaltask: str) -> list[client.V1Job]:
    return [j for j in api.jobs() if j.metadata.labels.get("evaloperator.io/evaltask") == evaltask]


def generation_observed(api: Api, name: str) -> bool:
    return bool(
        api.status(name).get("observedGeneration") == api.evaltask(name)["metadata"]["generation"]
    )


# Each scenario: what to do, what a user sees with every rule, what they see without one.


def basic_works(api: Api) -> None:
    status = api.wait_phase("basic", ("Succeeded",), timeout=30)
    assert status["progress"] == "2/2"
    assert "RunSucceeded" in operator_events(api, "basic")


def suspend_works(api: Api) -> None:
    api.wait_phase("suspend", ("Suspended",), timeout=30)
    [job] = jobs_of(api, "suspend")
    assert job.spec.suspend is True


def run_progress(api: Api) -> dict[str, Any] | None:
    runs = api.runs("progress")
    return runs[0].get("progress") if runs else None


def progress_works(api: Api) -> None:
    shown = wait_for(lambda: run_progress(api), 30, "the run's progress in its EvalRun")
    assert (shown["done"], shown["total"]) == (3, 10)


def no_progress(api: Api) -> None:
    wait_for(lambda: run_state(api, "progress") == "Running", 30, "the run to start")
    time.sleep(QUIET_SECONDS)
    assert run_state(api, "progress") == "Running", "the run goes on"
    assert run_progress(api) is None, "but shows no progress"


def edit_works(api: Api) -> None:
    api.wait_phase("edit", ("Succeeded",), timeout=30)
    assert api.run("edit", "m1", "alpha")["metrics"]["score"] == 0.9
    assert len(jobs_of(api, "edit")) == 1, "the old run's Job was deleted"


def rotate_works(api: Api) -> None:
    wait_for(lambda: generation_observed(api, "rotate"), 30, "the edit to be observed")
    assert owned_secret_value(api, "rotate") == ROTATED


# Namespace -> the uid of the EvalRun before the rerun was asked for.
RERUN_BEFORE: dict[str, str] = {}
ORPHAN_BEFORE: dict[str, str] = {}


def configs_work(api: Api) -> None:
    status = api.wait_phase("configs", ("Succeeded",), timeout=30)
    assert status["progress"] == "2/2"
    assert api.run("configs", "m1", "beta")["metrics"]["score"] == 0.75


def orphan_adopted(api: Api) -> None:
    api.wait_phase("orphan", ("Succeeded",), timeout=30)
    record = api.run("orphan", "m1", "alpha")
    assert record["uid"] == ORPHAN_BEFORE[api.ns], "the recorded result was run again"
    assert len(jobs_of(api, "orphan")) <= 1, "no second Job"


def not_adopted(api: Api) -> None:
    """The record left behind is the result: it is neither changed nor replaced, and the
    EvalTask says why it does not take it (Progressing names the wait)."""

    def said() -> bool:
        conds = api.status("orphan").get("conditions") or []
        return any(c["type"] == "Progressing" and "cannot adopt" in c["message"] for c in conds)

    wait_for(said, 30, "the EvalTask to say why")
    time.sleep(QUIET_SECONDS)
    assert api.status("orphan")["phase"] not in ("Succeeded", "Failed")
    assert api.run("orphan", "m1", "alpha")["uid"] == ORPHAN_BEFORE[api.ns], "not replaced"


def rerun_works(api: Api) -> None:
    wait_for(lambda: "evaloperator.io/rerun" not in annotations(api, "rerun"), 30, "the rerun")

    def ran_again() -> bool:
        runs = api.runs("rerun")
        return bool(
            len(runs) == 1
            and runs[0]["uid"] != RERUN_BEFORE[api.ns]
            and runs[0]["state"] == "Succeeded"
        )

    wait_for(ran_again, 30, "a new record of the run, Succeeded")
    assert api.run("rerun", "m1", "alpha")["attempts"] == 1


def annotations(api: Api, name: str) -> dict[str, str]:
    return dict(api.evaltask(name)["metadata"].get("annotations") or {})


def says_why_its_pod_is_missing(api: Api) -> None:
    wait_for(
        lambda: 'serviceaccount "nobody" not found' in run_message(api, "no-sa"),
        30,
        "the run to say why",
    )


def run_message(api: Api, name: str) -> str:
    return " ".join(str(r.get("message", "")) for r in api.runs(name))


def stays_without_status(name: str) -> Callable[[Api], None]:
    def check(api: Api) -> None:
        deadline = time.monotonic() + QUIET_SECONDS
        while time.monotonic() < deadline:
            assert not api.status(name), f"{name} got a status: {api.status(name)}"
            time.sleep(0.3)

    return check


def refused_and_said(resource: str, name: str = "basic") -> Callable[[Api], None]:
    """The pass stops at the refusal; the EvalTask says so (Progressing=False,
    ReconcileFailed, the server's words) and nothing starts."""

    def check(api: Api) -> None:
        def said() -> dict[str, Any] | None:
            conds = api.status(name).get("conditions") or []
            found = [c for c in conds if c["type"] == "Progressing"]
            return found[0] if found and found[0]["reason"] == "ReconcileFailed" else None

        cond = wait_for(said, 30, "Progressing=False saying why")
        assert cond["status"] == "False", cond
        assert f'cannot get resource "{resource}"' in cond["message"], cond
        time.sleep(QUIET_SECONDS)
        assert jobs_of(api, name) == [], "no Job started"

    return check


def results_never_recorded(api: Api) -> None:
    """The first pass has nothing to record and writes the status; the result of the Job
    that then finishes is never recorded, so the run and the EvalTask never finish."""
    wait_for(lambda: generation_observed(api, "basic"), 30, "the first pass's status")
    wait_for(
        lambda: any(j.status.succeeded for j in jobs_of(api, "basic")), 60, "the first Job's end"
    )
    time.sleep(QUIET_SECONDS)
    # Each chain's first EvalRun (m1 and m2), never written to.
    assert [r["state"] for r in api.runs("basic")] == [None, None], "no record was written"
    assert api.status("basic")["phase"] not in ("Succeeded", "Failed")
    assert len(jobs_of(api, "basic")) == 2, "one Job per chain, and nothing after it"


def no_events(api: Api) -> None:
    """Status is written, but what the operator would tell in events is lost."""
    api.wait_phase("basic", ("Succeeded",), timeout=30)
    assert operator_events(api, "basic") == []


def not_suspended(api: Api) -> None:
    [job] = jobs_of(api, "suspend")
    assert not job.spec.suspend, "the Job kept running"
    assert api.status("suspend")["phase"] == "Running"
    assert not generation_observed(api, "suspend")


def not_rerun(api: Api) -> None:
    assert len(jobs_of(api, "edit")) == 1, "the old Job stays"
    assert api.run("edit", "m1", "alpha")["metrics"]["score"] == 0.1, "the edit did not run"
    assert not generation_observed(api, "edit")


def not_rerun_on_request(api: Api) -> None:
    """The request's deletions are made, then taking it is refused: it stays, nothing is
    run for it (so nothing reruns twice once it can be taken), and the EvalTask says why."""

    def said() -> dict[str, Any] | None:
        cond = [
            c for c in api.status("rerun").get("conditions") or [] if c["type"] == "Progressing"
        ]
        return cond[0] if cond and cond[0]["reason"] == "ReconcileFailed" else None

    cond = wait_for(said, 30, "Progressing=False saying why")
    assert cond["status"] == "False" and "forbidden" in cond["message"], cond
    time.sleep(QUIET_SECONDS)
    assert annotations(api, "rerun").get("evaloperator.io/rerun") == "all"
    assert api.runs("rerun") == [], "the record went for the rerun, and no run was made"


def without_the_reason(api: Api) -> None:
    wait_for(lambda: api.runs("no-sa"), 30, "the run's EvalRun")
    time.sleep(QUIET_SECONDS)
    assert "not found" not in run_message(api, "no-sa")
    assert api.run("no-sa", "m1", "alpha")["state"] == "Pending"


def runs_wait_for_their_records(api: Api) -> None:
    """Status is written, but no EvalRun can be made, so no run starts; the status says why."""
    wait_for(lambda: generation_observed(api, "basic"), 30, "the status")
    time.sleep(QUIET_SECONDS)
    status = api.status("basic")
    assert [r["state"] for r in status["runs"]] == ["Pending", "Pending"]
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert "refused its EvalRun" in progressing["message"]
    assert api.jobs() == []


def job_refused(words: str) -> Callable[[Api], None]:
    """The dry-run is refused (a 403: RBAC may be fixed): the runs wait, saying the API
    server's words (ReadyToStart=False, JobRefused), and nothing runs."""

    def check(api: Api) -> None:
        def said() -> dict[str, Any] | None:
            conds = api.status("basic").get("conditions") or []
            found = [c for c in conds if c["type"] == "ReadyToStart" and c["status"] == "False"]
            return found[0] if found else None

        cond = wait_for(said, 30, "ReadyToStart=False saying why")
        assert cond["reason"] == "JobRefused", cond
        assert words in cond["message"], cond
        time.sleep(QUIET_SECONDS)
        assert api.status("basic")["phase"] not in ("Succeeded", "Failed")
        assert api.jobs() == []

    return check


def no_sa_fixed(api: Api, url: str) -> None:
    """A run whose pod cannot be created, then a fix of spec.template: its Job is replaced."""
    no_service_account(api, url)
    says_why_its_pod_is_missing(api)
    api.core.create_namespaced_service_account(
        api.ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="runner"))
    )
    api.patch_spec("no-sa", {"template": {"serviceAccountName": "runner"}})


def no_sa_fixed_works(api: Api) -> None:
    api.wait_phase("no-sa", ("Succeeded",), timeout=30)


def not_replaced(api: Api) -> None:
    time.sleep(QUIET_SECONDS)
    assert api.run("no-sa", "m1", "alpha")["state"] == "Pending"
    [job] = jobs_of(api, "no-sa")
    assert job.spec.template.spec.service_account_name == "nobody", "the Job was not replaced"
    assert not generation_observed(api, "no-sa")


def literal_auth_refused(api: Api) -> None:
    """The model with a literal auth value has no Secret to read; the other one runs."""
    wait_for(
        lambda: api.runs("basic") and api.run("basic", "m1", "alpha")["state"] == "Succeeded",
        30,
        "m1's run",
    )
    assert "AuthSecretRefused" in operator_events(api, "basic")
    assert api.run("basic", "m2", "alpha")["state"] != "Succeeded"


def not_rotated(api: Api) -> None:
    assert owned_secret_value(api, "rotate") == TOKEN, "new runs would use the old value"
    assert not generation_observed(api, "rotate")


@dataclass(frozen=True)
class Scenario:
    act: Callable[[Api, str], None]
    works: Callable[[Api], None]


BASIC = Scenario(basic, basic_works)
SUSPEND = Scenario(suspend, suspend_works)
PROGRESS = Scenario(progress, progress_works)
EDIT = Scenario(edit, edit_works)
ROTATE = Scenario(rotate, rotate_works)
RERUN = Scenario(rerun, rerun_works)
NO_SA = Scenario(no_service_account, says_why_its_pod_is_missing)
NO_SA_FIXED = Scenario(no_sa_fixed, no_sa_fixed_works)
ORPHAN = Scenario(orphan, orphan_adopted)
CONFIGS = Scenario(configs, configs_work)


@dataclass(frozen=True)
class Drop:
    group: str
    resource: str
    verb: str
    scenario: Scenario
    broken: Callable[[Api], None]
    # kopf's own list and watch requests span all namespaces; the operator's are namespaced.
    cluster_scope: bool = False
    # What the operator logs, when it is not RBAC's own words (an admission plugin's).
    log: str | None = None
    # The refusal is kopf's (a list or a watch it retries): /healthz fails saying so, and
    # the liveness probe restarts the pod.
    unhealthy: bool = False


NO_STATUS = stays_without_status("basic")
DROPS = {
    # Passes for events read the watches' copy; a pass a timer asks for (here: its Job has
    # no pod yet) reads the EvalTask afresh.
    "get evaltasks: a timer's pass reads its EvalTask afresh": Drop(
        "evaloperator.io", "evaltasks", "get", NO_SA, without_the_reason
    ),
    "list evaltasks: kopf lists them": Drop(
        "evaloperator.io", "evaltasks", "list", BASIC, NO_STATUS, True
    ),
    "watch evaltasks: kopf watches them": Drop(
        "evaloperator.io", "evaltasks", "watch", BASIC, NO_STATUS, True
    ),
    "patch evaltasks: a rerun request is taken": Drop(
        "evaloperator.io", "evaltasks", "patch", RERUN, not_rerun_on_request
    ),
    "patch evaltasks/status: the status": Drop(
        "evaloperator.io", "evaltasks/status", "patch", BASIC, NO_STATUS
    ),
    "update evaltasks/finalizers: EvalRuns owned with blockOwnerDeletion": Drop(
        "evaloperator.io",
        "evaltasks/finalizers",
        "update",
        BASIC,
        runs_wait_for_their_records,
        log="cannot set blockOwnerDeletion",
    ),
    "list evalruns: a pass reads the records": Drop(
        "evaloperator.io", "evalruns", "list", BASIC, NO_STATUS, True
    ),
    "create evalruns: one record per run": Drop(
        "evaloperator.io", "evalruns", "create", BASIC, runs_wait_for_their_records
    ),
    "patch evalruns: a record left by an orphaning delete is adopted": Drop(
        "evaloperator.io", "evalruns", "patch", ORPHAN, not_adopted
    ),
    "delete evalruns: an edit replaces a record": Drop(
        "evaloperator.io", "evalruns", "delete", EDIT, not_rerun
    ),
    "patch evalruns/status: the records": Drop(
        "evaloperator.io", "evalruns/status", "patch", BASIC, results_never_recorded
    ),
    "update evalruns/finalizers: Jobs owned with blockOwnerDeletion": Drop(
        "evaloperator.io",
        "evalruns/finalizers",
        "update",
        BASIC,
        job_refused("blockOwnerDeletion"),
        log="cannot set blockOwnerDeletion",
    ),
    "list jobs: a pass observes its Jobs": Drop("batch", "jobs", "list", BASIC, NO_STATUS, True),
    "create jobs: runs and the dry run": Drop(
        "batch", "jobs", "create", BASIC, job_refused('cannot create resource "jobs"')
    ),
    "patch jobs: spec.suspend": Drop("batch", "jobs", "patch", SUSPEND, not_suspended),
    "delete jobs: a template fix replaces a Job that never started": Drop(
        "batch", "jobs", "delete", NO_SA_FIXED, not_replaced
    ),
    "list pods: a pass reads the results": Drop("", "pods", "list", BASIC, NO_STATUS, True),
    "get pods/log: in-job progress": Drop("", "pods/log", "get", PROGRESS, no_progress),
    "list events: why a pod cannot be created": Drop(
        "", "events", "list", NO_SA, without_the_reason
    ),
    "get secrets: auth secretRef checked": Drop(
        "", "secrets", "get", BASIC, refused_and_said("secrets")
    ),
    "create secrets: a literal auth value": Drop(
        "", "secrets", "create", BASIC, literal_auth_refused
    ),
    "patch secrets: a new literal value": Drop("", "secrets", "patch", ROTATE, not_rotated),
    "get configmaps: configMapKeyRef checked": Drop(
        "", "configmaps", "get", BASIC, refused_and_said("configmaps")
    ),
    "create events.k8s.io events: events": Drop(
        "events.k8s.io", "events", "create", BASIC, no_events
    ),
    # A pass reads each configRef's config when it creates the run; kopf watches both kinds
    # so that runs waiting for a config start once it is applied.
    "get evaltaskconfigs: a configRef is resolved": Drop(
        "evaloperator.io",
        "evaltaskconfigs",
        "get",
        CONFIGS,
        refused_and_said("evaltaskconfigs", "configs"),
    ),
    "get clusterevaltaskconfigs: a cluster-wide configRef is resolved": Drop(
        "evaloperator.io",
        "clusterevaltaskconfigs",
        "get",
        CONFIGS,
        refused_and_said("clusterevaltaskconfigs", "configs"),
        log='cannot get resource "clusterevaltaskconfigs" in API group "evaloperator.io" '
        "at the cluster scope",
    ),
    **{
        f"{verb} {plural}: kopf follows the configs": Drop(
            "evaloperator.io", plural, verb, CONFIGS, configs_work, True, unhealthy=True
        )
        for plural in ("evaltaskconfigs", "clusterevaltaskconfigs")
        for verb in ("list", "watch")
    },
}
# Proven by the tests below the table rather than in it.
WATCHES = {
    ("batch", "jobs"): "jobs",
    ("", "pods"): "pods",
    ("evaloperator.io", "evalruns"): "evalruns",
}
CRD_VERBS = ("list", "watch")
# The leader Lease's Role, in the operator's own namespace.
LEASE_VERBS = ("get", "create", "update")


# --- the tests -------------------------------------------------------------------------------


def test_the_charts_operator_completes_a_multi_run_evaltask_with_only_the_charts_permissions(chart):
    api = chart.namespace()
    answers = {"alpha": "right", "beta": "right"}
    models = [
        MockModel.answering(f"m{i}", answers, token=TOKEN, host=host(chart.cluster)).__enter__()
        for i in (1, 2)
    ]
    try:
        spec = {
            "models": [
                {
                    "name": f"m{i}",
                    "url": m.url,
                    "auth": {"secretRef": {"name": "model-key", "key": "token"}},
                }
                for i, m in enumerate(models, 1)
            ],
            "tasks": [task("alpha", 0.25), task("beta", 0.75)],
        }
        api.create_evaltask("multi", spec)
        status = api.wait_phase("multi", ("Succeeded", "Failed"), timeout=60)
    finally:
        for m in models:
            m.__exit__()
    assert status["phase"] == "Succeeded", status
    assert (status["progress"], status["succeeded"]) == ("4/4", 4)
    assert api.run("multi", "m2", "beta")["metrics"]["score"] == 0.75
    assert all(m.requests == 2 and m.unauthorized == 0 for m in models)
    # It ran in the chart's pod, as the chart's ServiceAccount, and nothing was refused.
    pod = chart.all.pods()[0]
    assert pod["spec"]["serviceAccountName"] == chart.all.fullname
    assert "Initial authentication has finished" in chart.all.log()
    # NOTES.txt says how to follow an EvalTask and where the metrics are.
    assert "kubectl get evaltasks -w" in chart.all.notes
    assert f"{chart.all.fullname}-metrics.{chart.all.namespace}.svc:{chart.all.port}/metrics" in (
        chart.all.notes
    )
    assert "kubectl apply -n scoped-a -f examples/bfcl.yaml" in chart.scoped.notes
    assert chart.all.refusals() == []
    with urllib.request.urlopen(f"{chart.all.url}/metrics", timeout=5) as response:
        assert "eval_operator_reconcile_total" in response.read().decode()


def test_every_verb_of_the_clusterrole_is_proven_below(chart):
    granted = {
        (g, r, v)
        for rule in chart.full_rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    proven = {(d.group, d.resource, d.verb) for d in DROPS.values()}
    proven |= {(g, r, "watch") for g, r in WATCHES}
    proven |= {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in CRD_VERBS}
    assert granted == proven


def test_with_every_rule_each_scenario_works(chart):
    scenarios = (BASIC, SUSPEND, PROGRESS, EDIT, ROTATE, RERUN, NO_SA, NO_SA_FIXED, ORPHAN, CONFIGS)
    for scenario in scenarios:
        api = chart.namespace()
        scenario.act(api, chart.model.url)
        scenario.works(api)
        api.core.delete_namespace(api.ns)
    assert chart.all.refusals() == []


@pytest.mark.parametrize("drop", DROPS.values(), ids=DROPS.keys())
def test_without_the_verb_the_operator_fails_visibly(chart, drop):
    chart.all.set_rules(without(chart.full_rules, drop.group, drop.resource, drop.verb))
    try:
        chart.all.restart(healthy=not drop.unhealthy)
        if drop.unhealthy:  # kopf's log quotes the API server's answer, escaped
            chart.all.wait_log(rf'cannot {drop.verb} resource \\?"?{drop.resource}\b')
        elif drop.cluster_scope:  # kopf's, at its start: wait, so that nothing new is missed
            chart.all.wait_log(forbidden(drop.verb, drop.resource, drop.group, None))
        api = chart.namespace()
        drop.scenario.act(api, chart.model.url)
        if drop.log:
            chart.all.wait_log(re.escape(drop.log))
        elif not drop.cluster_scope:
            chart.all.wait_log(forbidden(drop.verb, drop.resource, drop.group, api.ns))
        drop.broken(api)
        if drop.unhealthy:
            said = wait_for(chart.all.unhealthy, 60, "/healthz to fail")
            assert drop.resource in said, said
    finally:
        chart.all.set_rules(chart.full_rules)
    api.core.delete_namespace(api.ns)


@pytest.mark.parametrize("verb", LEASE_VERBS)
def test_without_the_lease_verb_the_operator_never_leads_and_says_why(chart, verb):
    """get reads the Lease, create makes it the first time, update takes and renews it:
    without any one, the replica waits to lead forever and reconciles nothing."""
    release = chart.all
    role = f"{release.fullname}-leader"
    full = release.rules("role", release.namespace, role)
    [rule] = full
    assert rule["resources"] == ["leases"] and sorted(rule["verbs"]) == sorted(LEASE_VERBS)
    release.stop()  # a graceful stop hands the Lease back: it exists, held by nobody
    if verb == "create":
        release.cluster.kubectl(
            "delete", "lease", "-n", release.namespace, release.fullname, "--ignore-not-found"
        )
    release.set_rules(
        without(full, "coordination.k8s.io", "leases", verb), "role", release.namespace, role
    )
    try:
        release.start()
        release.wait_log(forbidden(verb, "leases", "coordination.k8s.io", release.namespace))
        api = chart.namespace()
        BASIC.act(api, chart.model.url)
        NO_STATUS(api)
        with urllib.request.urlopen(f"{release.url}/metrics", timeout=5) as response:
            assert "eval_operator_leader 0.0" in response.read().decode()
    finally:
        release.set_rules(full, "role", release.namespace, role)
    # With the rule back it leads at its next try, with no restart, and catches up.
    BASIC.works(api)
    api.core.delete_namespace(api.ns)


@pytest.mark.parametrize("resource", WATCHES.values())
def test_without_watch_kopf_retries_and_the_liveness_probe_restarts_the_pod(chart, resource):
    """kopf retries the refused watch (every 10 s once its first backoffs are spent) for as
    long as it is refused, so the operator recovers by itself once the rule is back; while
    it is refused, /healthz fails saying which request, so the liveness probe restarts the
    pod, over and over, and the admin sees it."""
    release = chart.crashing[resource]
    try:
        release.wait_log(rf'cannot watch resource \\?"?{resource}', timeout=GIVE_UP_SECONDS)
        wait_for(
            lambda: release.restart_count() >= 1,
            GIVE_UP_SECONDS,
            f"the liveness probe to restart {release.name}",
        )
    except AssertionError as error:
        statuses = [p["status"].get("containerStatuses") for p in release.pods()]
        raise AssertionError(f"{error}\n{statuses}\n{release.log()[-4000:]}") from None
    assert "the API server is unreachable or refuses kopf" in release.log()
    assert "has failed" not in release.log(), "kopf never gives up a watch"
    # The same chart with every rule, started at the same time, runs on.
    assert chart.scoped.restart_count() == 0
    assert "has failed" not in chart.scoped.log()
    # Gone before the CRD test deletes the CRD, which would add failing watchers to its log.
    chart.cluster.helm("uninstall", release.name, "-n", release.namespace, "--wait")


@pytest.mark.parametrize(
    "verb",
    [
        pytest.param(None, id="all rules"),
        *(pytest.param(v, id=f"without {v} crds") for v in CRD_VERBS),
    ],
)
def test_the_crd_rule_serves_a_crd_created_after_the_operator_started(chart, verb):
    """Applying the CRD together with the operator (one `kubectl apply` of the rendered chart,
    a GitOps sync) or re-creating it: kopf sees the CRD appear only by watching CRDs."""
    operator = chart.all
    operator.restart()  # every rule, so its finalizers go with the EvalTasks
    chart.cluster.kubectl("delete", "evaltasks", "--all", "--all-namespaces", "--timeout=60s")
    operator.stop()
    chart.cluster.kubectl("delete", "crd", CRD_NAME, "--timeout=60s")
    if verb:
        operator.set_rules(
            without(chart.full_rules, "apiextensions.k8s.io", "customresourcedefinitions", verb)
        )
    try:
        operator.start()
        operator.wait_log("Unresolved resources cannot be served")
        if verb:
            operator.wait_log(
                forbidden(verb, "customresourcedefinitions", "apiextensions.k8s.io", None)
            )
        apply_chart_crd(chart.cluster)
        api = chart.namespace()
        basic(api, chart.model.url)
        if verb:
            stays_without_status("basic")(api)
        else:
            basic_works(api)
    finally:
        operator.set_rules(chart.full_rules)
        apply_chart_crd(chart.cluster)
        # A namespaced operator does not follow CRDs (it scans nothing cluster-wide): its
        # watch of the deleted CRD ended it, and only a start after the CRD is back serves.
        chart.scoped.restart()


def test_namespaced_mode_serves_only_its_namespaces_with_no_cluster_wide_access(chart):
    scoped, operator = chart.scoped, chart.all
    operator.stop()  # it serves every namespace; only the scoped operator may act now
    try:
        cluster_rules = scoped.rules()
        assert cluster_rules == [
            {
                "apiGroups": ["apiextensions.k8s.io"],
                "resources": ["customresourcedefinitions"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["evaloperator.io"],
                "resources": ["clusterevaltaskconfigs"],
                "verbs": ["get", "list", "watch"],
            },
        ]
        assert scoped.rules("role", "scoped-a") == [
            r for r in chart.full_rules if r not in cluster_rules
        ]
        # ... and that ClusterRole is the only one bound to its ServiceAccount.
        bindings = json.loads(
            chart.cluster.kubectl("get", "clusterrolebindings", "-o", "json").stdout
        )
        bound = [
            b["roleRef"]["name"]
            for b in bindings["items"]
            for subject in b.get("subjects") or []
            if (subject.get("namespace"), subject["name"]) == (scoped.namespace, scoped.fullname)
        ]
        assert bound == [scoped.fullname]
        other = make_namespace(chart.api_client, "scoped-b")
        mine = Api(chart.api_client, "scoped-a")
        mine.secret("model-key", {"token": TOKEN})
        mine.configmap("eval-config", {"dataset": "rbac"})

        def can_i(*args: str) -> str:
            out = chart.cluster.kubectl(
                "auth", "can-i", *args, f"--as={scoped.account}", check=False
            )
            return out.stdout.strip()

        # verb, resource, allowed in its own namespace
        for verb, resource, mine_too in (
            ("list", "jobs.batch", True),
            ("create", "jobs.batch", True),
            ("get", "secrets", True),
            ("list", "secrets", False),
        ):
            assert can_i(verb, resource, "--all-namespaces") == "no", (verb, resource)
            assert can_i(verb, resource, "-n", "scoped-b") == "no", (verb, resource)
            expected = "yes" if mine_too else "no"
            assert can_i(verb, resource, "-n", "scoped-a") == expected, (verb, resource)
        assert can_i("list", "namespaces") == "no"
        assert can_i("watch", "customresourcedefinitions.apiextensions.k8s.io") == "yes"

        basic(other, chart.model.url)
        basic(mine, chart.model.url)
        try:
            basic_works(mine)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{mine.runs('basic')}\n{scoped.log()[-3000:]}") from None
        stays_without_status("basic")(other)
        assert other.jobs() == []
        # Given its namespaces, the operator lists none, so nothing at all was refused.
        assert scoped.refusals() == []
    finally:
        operator.start()
