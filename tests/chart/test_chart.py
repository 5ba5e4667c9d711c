"""What the chart renders: lint, security settings, RBAC rules exactly as documented, labels,
the operator's arguments, the optional objects, the values schema, and the CRD's copy.

tests/e2e/test_helm_rbac.py installs the chart and proves each rule needed; these tests pin
what is rendered, so a change to the rules shows here and in README.md's list together.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from localkube.cluster import ROOT
from tests.chart.support import CHART, NAMESPACE, RELEASE, chart_meta, find, the

NAMESPACED = ("--set", "watchNamespaces={team-a,team-b}")
CRD_RULE = {
    "apiGroups": ["apiextensions.k8s.io"],
    "resources": ["customresourcedefinitions"],
    "verbs": ["list", "watch"],
}
CLUSTER_CONFIG_RULE = {
    "apiGroups": ["evaloperator.io"],
    "resources": ["clusterevaltaskconfigs"],
    "verbs": ["get", "list", "watch"],
}
# Cluster-wide whatever the operator serves.
CLUSTER_RULES = [CRD_RULE, CLUSTER_CONFIG_RULE]
# The rules in every served namespace: the ClusterRole's (all namespaces) or each Role's.
NAMESPACED_RULES = [
    {
        "apiGroups": ["evaloperator.io"],
        "resources": ["evaltasks"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {"apiGroups": ["evaloperator.io"], "resources": ["evaltasks/status"], "verbs": ["patch"]},
    {"apiGroups": ["evaloperator.io"], "resources": ["evaltasks/finalizers"], "verbs": ["update"]},
    {
        "apiGroups": ["evaloperator.io"],
        "resources": ["evalruns"],
        "verbs": ["list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": ["evaloperator.io"], "resources": ["evalruns/status"], "verbs": ["patch"]},
    {"apiGroups": ["evaloperator.io"], "resources": ["evalruns/finalizers"], "verbs": ["update"]},
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    {
        "apiGroups": ["evaloperator.io"],
        "resources": ["evaltaskconfigs"],
        "verbs": ["get", "list", "watch"],
    },
]
FULLNAME = f"{RELEASE}-eval-operator"
# The leader Lease: a Role in the operator's own namespace, whatever it serves.
LEADER_RULES = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "update"],
    }
]
LEADER_ARGS = ["--leader-elect=true", f"--leader-elect-name={FULLNAME}"]
POD_NAMESPACE = {
    "name": "POD_NAMESPACE",
    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
}


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [operator] = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


@pytest.mark.parametrize(
    "values",
    [
        pytest.param((), id="all namespaces"),
        pytest.param(NAMESPACED, id="two namespaces"),
    ],
)
def test_helm_lint_is_clean(helm, values):
    out = helm.run("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in out.stdout, out.stdout


def test_without_leader_election_one_operator_runs_and_an_upgrade_never_overlaps(helm):
    # replicaCount applies only with leader election: two operators would undo each other.
    off = ("--set", "leaderElection.enabled=false", "--set", "replicaCount=3")
    spec = the(helm.template(*off), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert (
        "--leader-elect=false"
        in container(helm.template("--set", "leaderElection.enabled=false"))["args"]
    )


def test_the_deployment_runs_two_locked_down_replicas(helm):
    docs = helm.template()
    deployment = the(docs, "Deployment")
    spec = deployment["spec"]
    # Two replicas, of which the Lease's holder reconciles: an upgrade may roll.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    operator = container(docs)
    assert operator["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "command" not in operator, "the image's entry point runs: python -m eval_operator"
    assert operator["image"] == f"eval-operator/operator:{chart_meta()['appVersion']}"
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    assert operator["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert operator[probe]["httpGet"] == {"path": path, "port": "metrics"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param((), [], id="all namespaces: no --namespace"),
        pytest.param(
            NAMESPACED,
            ["--namespace=team-a", "--namespace=team-b"],
            id="a list: one --namespace each",
        ),
        pytest.param(("--set", "watchNamespaces={solo}"), ["--namespace=solo"], id="one namespace"),
    ],
)
def test_the_operator_is_told_what_to_watch(helm, values, expected):
    args = container(helm.template(*values))["args"]
    version = chart_meta()["appVersion"]
    assert args[:7] == [
        f"--runner-image=eval-operator/runner:{version}",
        "--log-level=INFO",
        "--metrics-port=8080",
        "--default-timeout=86400",
        "--start-timeout=600",
        "--job-ttl=86400",
        "--progress-interval=30",
    ]
    assert args[7:] == [*expected, *LEADER_ARGS]


def test_all_namespaces_one_clusterrole_with_every_rule(helm):
    docs = helm.template()
    assert the(docs, "ClusterRole")["rules"] == [*CLUSTER_RULES, *NAMESPACED_RULES]
    binding = the(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    [leader] = find(docs, "Role")
    assert leader["metadata"]["namespace"] == NAMESPACE
    assert leader["rules"] == LEADER_RULES
    [leader_binding] = find(docs, "RoleBinding")
    assert leader_binding["roleRef"]["name"] == leader["metadata"]["name"]
    assert the(docs, "ServiceAccount")["metadata"]["name"] == FULLNAME


def test_namespaced_only_reading_crds_is_cluster_wide(helm):
    docs = helm.template(*NAMESPACED)
    assert the(docs, "ClusterRole")["rules"] == CLUSTER_RULES
    roles = {r["metadata"]["namespace"]: r["rules"] for r in find(docs, "Role")}
    assert roles == {
        "team-a": NAMESPACED_RULES,
        "team-b": NAMESPACED_RULES,
        NAMESPACE: LEADER_RULES,
    }
    bindings = find(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(
        ["team-a", "team-b", NAMESPACE]
    )
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]


def readme_rules() -> list[tuple[str, str, list[str]]]:
    """The rows of README.md's table of the ClusterRole's rules: group, resource, verbs."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Install") :]
    rows = re.findall(r"^\| `([^`]*)` \| `([^`]+)` \| ([a-z, ]+) \|", section, re.MULTILINE)
    return [(group.strip('"'), resource, verbs.split(", ")) for group, resource, verbs in rows]


def test_readme_lists_exactly_the_rendered_rules():
    expected = [
        (rule["apiGroups"][0], rule["resources"][0], rule["verbs"])
        for rule in [*CLUSTER_RULES, *NAMESPACED_RULES, *LEADER_RULES]
    ]
    assert readme_rules() == expected


@pytest.mark.parametrize(
    "values",
    [
        pytest.param((), id="all namespaces"),
        pytest.param(NAMESPACED, id="two namespaces"),
    ],
)
def test_every_object_carries_the_recommended_labels(helm, values):
    docs = helm.template(
        *values,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "grafanaDashboard.enabled=true",
    )
    meta = chart_meta()
    expected = {
        "app.kubernetes.io/name": "eval-operator",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/version": meta["appVersion"],
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/part-of": "eval-operator",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"eval-operator-{meta['version']}",
    }
    assert len(docs) >= 7
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert expected.items() <= labels.items(), (doc["kind"], labels)
    deployment = the(docs, "Deployment")["spec"]
    selector = deployment["selector"]["matchLabels"]
    assert selector.items() <= deployment["template"]["metadata"]["labels"].items()
    assert the(docs, "Service")["spec"]["selector"] == selector
    assert the(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"] == selector


@pytest.mark.parametrize(
    ("values", "path", "expected"),
    [
        pytest.param(("image.tag=v9",), ("image",), "eval-operator/operator:v9", id="image tag"),
        pytest.param(
            ("image.digest=sha256:" + "a" * 64,),
            ("image",),
            "eval-operator/operator@sha256:" + "a" * 64,
            id="image digest wins over the tag",
        ),
        pytest.param(
            ("image.pullPolicy=Always",), ("imagePullPolicy",), "Always", id="pull policy"
        ),
        pytest.param(
            ("runnerImage.repository=reg.example/runner", "runnerImage.tag=v2"),
            ("args", 0),
            "--runner-image=reg.example/runner:v2",
            id="runner image",
        ),
        pytest.param(("logLevel=DEBUG",), ("args", 1), "--log-level=DEBUG", id="log level"),
        pytest.param(
            ("metrics.port=9100",),
            ("args", 2),
            "--metrics-port=9100",
            id="metrics port in the arguments",
        ),
        pytest.param(
            ("jobTtlSecondsAfterFinished=0",),
            ("args", 5),
            "--job-ttl=0",
            id="a Job TTL of 0 keeps finished Jobs",
        ),
        pytest.param(
            ("metrics.port=9100",),
            ("ports", 0, "containerPort"),
            9100,
            id="metrics port on the container",
        ),
        pytest.param(
            ("resources.limits.cpu=2",), ("resources", "limits", "cpu"), 2, id="resources"
        ),
    ],
)
def test_container_values(helm, values, path, expected):
    node: Any = container(helm.template(*(a for v in values for a in ("--set", v))))
    for key in path:
        node = node[key]
    assert node == expected


@pytest.mark.parametrize(
    ("value", "path", "expected"),
    [
        pytest.param(
            "imagePullSecrets[0].name=regcred",
            ("spec", "imagePullSecrets"),
            [{"name": "regcred"}],
            id="imagePullSecrets",
        ),
        pytest.param(
            "nodeSelector.pool=evals",
            ("spec", "nodeSelector"),
            {"pool": "evals"},
            id="nodeSelector",
        ),
        pytest.param(
            "tolerations[0].key=evals,tolerations[0].operator=Exists",
            ("spec", "tolerations"),
            [{"key": "evals", "operator": "Exists"}],
            id="tolerations",
        ),
        pytest.param(
            "affinity.nodeAffinity.x=1",
            ("spec", "affinity"),
            {"nodeAffinity": {"x": 1}},
            id="affinity",
        ),
        pytest.param(
            "podAnnotations.team=evals",
            ("metadata", "annotations"),
            {"team": "evals"},
            id="podAnnotations",
        ),
        pytest.param(
            "podLabels.team=evals", ("metadata", "labels", "team"), "evals", id="podLabels"
        ),
        pytest.param(
            "priorityClassName=high", ("spec", "priorityClassName"), "high", id="priorityClassName"
        ),
    ],
)
def test_pod_values(helm, value, path, expected):
    node: Any = the(helm.template("--set", value), "Deployment")["spec"]["template"]
    for key in path:
        node = node[key]
    assert node == expected


def test_metrics_service_and_optional_servicemonitor(helm):
    docs = helm.template()
    service = the(docs, "Service")
    assert service["metadata"]["name"] == f"{FULLNAME}-metrics"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert find(docs, "ServiceMonitor") == [], "off by default"
    monitor = the(
        helm.template(
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.serviceMonitor.labels.release=prometheus",
        ),
        "ServiceMonitor",
    )
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")


def test_the_grafana_dashboard_configmap_is_optional(helm):
    assert find(helm.template(), "ConfigMap") == [], "off by default"
    docs = helm.template(
        "--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=monitoring"
    )
    configmap = the(docs, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    dashboard = CHART / "grafana" / "eval-operator.json"
    assert json.loads(configmap["data"]["eval-operator.json"]) == json.loads(dashboard.read_text())


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        pytest.param(
            "watchNamespaces={Team_A}", "watchNamespaces/0", id="a namespace that is no DNS label"
        ),
        pytest.param("watchNamespaces={a,a}", "watchNamespaces", id="a namespace twice"),
        pytest.param("logLevel=LOUD", "logLevel", id="an unknown log level"),
        pytest.param("metrics.port=0", "metrics/port", id="no metrics port (the probes need it)"),
        pytest.param("image.pullPolicy=Sometimes", "image/pullPolicy", id="an unknown pull policy"),
        pytest.param(
            "runnerImage.pullPolicy=Always",
            "runnerImage",
            id="a runner pull policy the operator cannot apply",
        ),
        pytest.param("replicas=2", "replicas", id="replicas (one operator only)"),
        pytest.param(
            "jobTtlSecondsAfterFinished=-1", "jobTtlSecondsAfterFinished", id="a negative Job TTL"
        ),
    ],
)
def test_the_values_schema_refuses(helm, value, complaint):
    out = helm.run("template", RELEASE, str(CHART), "--set", value, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert complaint in out.stderr, out.stderr


KINDS = ["evaltask", "evalrun", "evaltaskconfig", "clusterevaltaskconfig"]


@pytest.mark.parametrize("which", KINDS)
def test_the_charts_crds_are_the_generated_ones(which):
    chart_crd = CHART / "crds" / f"{which}.yaml"
    assert chart_crd.read_bytes() == (ROOT / "crds" / f"{which}.yaml").read_bytes(), (
        f"charts/eval-operator/crds/{which}.yaml drifted from crds/{which}.yaml: run `make crds`"
    )
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == sorted(
        f"{k}.yaml" for k in KINDS
    ), "crds/ holds the generated CRDs only"
    assert f"CRD_KINDS := {' '.join(KINDS)}" in (ROOT / "Makefile").read_text(), (
        "`make crds` writes every CRD and keeps the chart's copies in step"
    )


def test_helm_installs_every_crd_from_crds(helm):
    docs = helm.template("--include-crds")
    crds = find(docs, "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "clusterevaltaskconfigs.evaloperator.io",
        "evalruns.evaloperator.io",
        "evaltaskconfigs.evaloperator.io",
        "evaltasks.evaloperator.io",
    ]
    for which in KINDS:
        assert yaml.safe_load((ROOT / "crds" / f"{which}.yaml").read_text()) in crds
    assert find(helm.template(), "CustomResourceDefinition") == [], "crds/ is not templated"


def test_extra_env_reaches_the_operators_container(helm):
    docs = helm.template(
        "--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=p:3128"
    )
    assert container(docs)["env"] == [POD_NAMESPACE, {"name": "HTTPS_PROXY", "value": "p:3128"}]
    assert container(helm.template())["env"] == [POD_NAMESPACE], "no other by default"
