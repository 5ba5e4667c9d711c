"""Generated EvalTask specs, valid and not, through the real API server and the operator.

hypothesis draws specs near the schema: names that are and are not DNS labels, urls,
images with and without tags, versions, env with values and valueFrom (references that
exist, that do not, that name no object), mounts, resources, results formats, score
rules, parameters, template settings, numbers at and past their bounds. Each one is
either refused by the API server (the CRD's schema and CEL rules: a 4xx naming the
field), or accepted and then given a verdict by the operator: SpecValid=False with a
reason, or SpecValid=True. Accepted specs are suspended, so a valid one is checked (its
references, the server-side dry run of its Jobs) without starting 500 pods. No pass may
crash: no traceback in the operator's log, no pass counted as an error. Then a valid
EvalTask, applied after all of them, runs to the end.
"""

from __future__ import annotations

import copy
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from localkube.cluster import LocalCluster
from tests.e2e.support import GROUP, PLURAL, VERSION, Api, model, task

pytestmark = pytest.mark.e2e
EXAMPLES = 500

label = st.one_of(
    st.from_regex(r"\A[a-z]([-a-z0-9]{0,10}[a-z0-9])?\Z"),
    st.sampled_from(["", "UPPER", "-lead", "trail-", "a" * 64, "dots.in.it", "ünï"]),
)
object_name = st.one_of(
    st.sampled_from(["model-key", "eval-config", "missing", "model-key.v2"]),
    st.sampled_from(["", "../../kube-system/secrets/x", "Bad_Name", "a/b", "a" * 254]),
)
url = st.sampled_from(
    [
        "http://198.51.100.10:1/v1/chat/completions",
        "https://api.example.com/v1/chat/completions",
        "ftp://example.com/x",
        "not a url",
        "",
        "http://[::1",
    ]
)
image = st.sampled_from(
    [
        "eval-operator/base",
        "eval-operator/base:bookworm",
        "localhost:5000/evals",
        "repo@sha256:" + "a" * 64,
        "has space",
        "",
    ]
)
version = st.one_of(
    st.none(), st.sampled_from(["bookworm", "v1", "sha256:" + "b" * 64, "bad tag!", ""])
)
number = st.one_of(
    st.integers(min_value=-5, max_value=10),
    st.sampled_from([0, 1, 3600, 2**31, 10**12]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
env_var = st.fixed_dictionaries(
    {"name": st.sampled_from(["MODEL_NAME", "EVAL_OUTPUT_DIR", "ok_name", "bad name", ""])},
    optional={
        "value": st.text(max_size=20),
        "valueFrom": st.one_of(
            st.fixed_dictionaries(
                {"secretKeyRef": st.fixed_dictionaries({"name": object_name, "key": label})}
            ),
            st.fixed_dictionaries(
                {"configMapKeyRef": st.fixed_dictionaries({"name": object_name, "key": label})}
            ),
            st.just({"secretKeyRef": {"key": "token"}}),
            st.just({"fieldRef": {"fieldPath": "metadata.name"}}),
        ),
    },
)
mount = st.fixed_dictionaries(
    {
        "name": label,
        "mountPath": st.sampled_from(["/data", "relative", "/opt/ml/output", ""]),
        "source": st.one_of(
            st.just({"emptyDir": {}}),
            st.fixed_dictionaries({"secret": st.fixed_dictionaries({"secretName": object_name})}),
            st.just({"secret": {}}),
            st.fixed_dictionaries({"configMap": st.fixed_dictionaries({"name": object_name})}),
            st.just({"emptyDir": {}, "secret": {"secretName": "model-key"}}),
            st.just({}),
        ),
    },
    optional={"readOnly": st.booleans(), "subPath": st.sampled_from(["x", "../up", ""])},
)
quantity = st.sampled_from(["1", "500m", "2Gi", "-1", "lots", "1e3"])
a_task = st.fixed_dictionaries(
    {"name": label, "image": image},
    optional={
        "version": version,
        "command": st.lists(st.text(max_size=10), max_size=3),
        "args": st.lists(st.text(max_size=10), max_size=3),
        "env": st.lists(env_var, max_size=3),
        "mounts": st.lists(mount, max_size=2),
        "resources": st.fixed_dictionaries(
            {"requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantity)}
        ),
        "timeoutSeconds": number,
        "retries": number,
        "weight": number,
        "primaryMetric": st.sampled_from(["accuracy", "", "x" * 200]),
        "metricWeights": st.dictionaries(st.sampled_from(["accuracy", "f1"]), number, max_size=2),
        "results": st.fixed_dictionaries(
            {"format": st.sampled_from(["metrics-json", "lm-eval", "bfcl", "csv"])},
            optional={"path": st.sampled_from(["", "out", "../escape", "/abs"])},
        ),
    },
)
a_model = st.fixed_dictionaries(
    {"name": label, "url": url},
    optional={
        "auth": st.one_of(
            st.fixed_dictionaries(
                {"secretRef": st.fixed_dictionaries({"name": object_name, "key": label})}
            ),
            st.fixed_dictionaries({"value": st.text(min_size=1, max_size=20)}),
            st.just({"value": "Bearer x", "secretRef": {"name": "model-key", "key": "token"}}),
            st.just({}),
        ),
        "parameters": st.dictionaries(st.sampled_from(["temperature", "EVAL_MODEL_NAME"]), label),
    },
)
# A valid spec, then up to three of its fields set to drawn values (many of them wrong):
# a spec with one wrong field reaches the check that catches it, where one with ten would
# only ever meet the CRD's first complaint.
BASE: dict[str, Any] = {
    "models": [{"name": "m1", "url": "http://198.51.100.10:1/v1/chat/completions"}],
    "tasks": [{"name": "t1", "image": "eval-operator/base", "version": "bookworm"}],
}
FIELDS: dict[tuple[Any, ...], st.SearchStrategy[Any]] = {
    ("models", 0, "name"): label,
    ("models", 0, "url"): url,
    ("models", 0, "auth"): a_model.map(lambda m: m.get("auth", {})),
    ("models", 0, "parameters"): st.dictionaries(
        st.sampled_from(["temperature", "EVAL_MODEL_NAME"]), label
    ),
    ("models", 0, "tls"): st.fixed_dictionaries(
        {"caConfigMap": st.fixed_dictionaries({"name": object_name, "key": label})}
    ),
    ("tasks", 0, "name"): label,
    ("tasks", 0, "image"): image,
    ("tasks", 0, "version"): version,
    ("tasks", 0, "env"): st.lists(env_var, max_size=3),
    ("tasks", 0, "mounts"): st.lists(mount, max_size=2),
    ("tasks", 0, "resources"): st.fixed_dictionaries(
        {"requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantity)}
    ),
    ("tasks", 0, "timeoutSeconds"): number,
    ("tasks", 0, "retries"): number,
    ("tasks", 0, "weight"): number,
    ("tasks", 0, "primaryMetric"): st.sampled_from(["accuracy", "", "x" * 200]),
    ("tasks", 0, "metricWeights"): st.dictionaries(
        st.sampled_from(["accuracy", "f1"]), number, max_size=2
    ),
    ("tasks", 0, "results"): st.fixed_dictionaries(
        {"format": st.sampled_from(["metrics-json", "lm-eval", "bfcl", "csv"])},
        optional={"path": st.sampled_from(["", "out", "../escape", "/abs"])},
    ),
    ("tasks", 1): a_task,
    ("models", 1): a_model,
    ("parallelism",): number,
    ("probeTimeoutSeconds",): number,
    ("parameters",): st.dictionaries(st.sampled_from(["MAX_CONCURRENCY", "EVAL_TASK_NAME"]), label),
    ("template",): st.fixed_dictionaries(
        {},
        optional={
            "serviceAccountName": object_name,
            "priorityClassName": object_name,
            "labels": st.dictionaries(st.sampled_from(["team", "bad key!"]), label),
            "imagePullSecrets": st.lists(st.fixed_dictionaries({"name": object_name})),
        },
    ),
    ("output",): st.fixed_dictionaries(
        {"mountPath": st.sampled_from(["/opt/ml/output", "relative"])},
        optional={"persistentVolumeClaim": st.fixed_dictionaries({"claimName": object_name})},
    ),
}
PATHS = sorted(FIELDS, key=str)


def with_field(spec: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    where: Any = spec
    for key in path[:-1]:
        where = where[key]
    last = path[-1]
    if isinstance(where, list) and last >= len(where):
        where.append(value)
    else:
        where[last] = value
    return spec


@st.composite
def a_spec(draw: st.DrawFn) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=3, unique=True)):
        spec = with_field(spec, path, draw(FIELDS[path]))
    return spec


def reconcile_errors(cluster: LocalCluster) -> float:
    url = f"http://127.0.0.1:{cluster.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('eval_operator_reconcile_total{result="error"}')
    )


def verdict(api: Api, name: str) -> str | None:
    doc = api.evaltask(name)
    status = doc.get("status") or {}
    if status.get("observedGeneration") != doc["metadata"]["generation"]:
        return None
    for cond in status.get("conditions") or []:
        if cond["type"] == "SpecValid":
            return "valid" if cond["status"] == "True" else f"invalid:{cond['reason']}"
    return None


def test_generated_specs_are_refused_judged_or_run_and_no_pass_crashes(
    cluster: LocalCluster, api: Api, models: Any
) -> None:
    api.configmap("eval-config", {"dataset": "x", "ca.crt": "not a cert"})
    errors_before = reconcile_errors(cluster)
    log_from = cluster.operator_log.stat().st_size
    accepted: list[str] = []
    refusals: Counter[int] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # nothing written into the work tree
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(a_spec())
    def apply(spec: dict[str, Any]) -> None:
        name = f"gen-{len(accepted) + sum(refusals.values())}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EvalTask",
            "metadata": {"name": name},
            "spec": {**spec, "suspend": True},
        }
        try:
            api.custom.create_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL, body)
        except ApiException as e:
            # The schema or a CEL rule said no, naming what: never the server failing.
            assert e.status in (400, 422), (e.status, e.body, spec)
            assert "spec" in str(e.body), e.body
            refusals[e.status] += 1
            return
        accepted.append(name)

    apply()
    assert len(accepted) + sum(refusals.values()) >= EXAMPLES
    pending = set(accepted)
    verdicts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    deadline = time.monotonic() + 300
    while pending:
        assert time.monotonic() < deadline, f"no verdict for {sorted(pending)[:5]}"
        for name in sorted(pending):
            found = verdict(api, name)
            if found is not None:
                verdicts[found.split(":")[0]] += 1
                reasons[found] += 1
                pending.discard(name)
        time.sleep(0.5)
    log = cluster.operator_log.read_text()[log_from:]
    assert "Traceback" not in log, log[-5000:]
    assert reconcile_errors(cluster) == errors_before, "a pass failed"
    print(
        f"specs={len(accepted) + sum(refusals.values())} refused_by_api={sum(refusals.values())} "
        f"accepted={len(accepted)} spec_valid={verdicts['valid']} "
        f"spec_invalid={verdicts['invalid']} reasons={dict(reasons)}"
    )
    # Both kinds of verdict came up: the generator reaches past the schema and within it.
    assert verdicts["valid"] and verdicts["invalid"] and refusals
    # And the operator still serves: a valid EvalTask applied now runs to the end.
    api.create_evaltask("after", {"models": [model("m1", models[0].url)], "tasks": [task("a", 1)]})
    assert api.wait_phase("after", ("Succeeded",), timeout=120)["progress"] == "1/1"
