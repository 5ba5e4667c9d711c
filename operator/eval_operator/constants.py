"""Names shared by the API, the manifests and the status: one place to read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

GROUP: Final = "evaloperator.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Kind:
    """One custom resource's names, as its CRD declares them and the API's paths use them.
    Each of ours is singular and plural by the rule: the kind lowercased, plus an "s"."""

    kind: str
    short_name: str

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def plural(self) -> str:
        return f"{self.singular}s"


EVALTASK: Final = Kind("EvalTask", "et")
# The per-run record, written by the operator only.
EVALRUN: Final = Kind("EvalRun", "er")
# Saved task configurations that tasks[] entries name in their configRef.
TASK_CONFIG: Final = Kind("EvalTaskConfig", "etc")
CLUSTER_TASK_CONFIG: Final = Kind("ClusterEvalTaskConfig", "cetc")

# Environment the operator injects; a spec may not set these itself.
ENV_OUTPUT_DIR: Final = "EVAL_OUTPUT_DIR"
ENV_INFERENCE_URL: Final = "EVAL_INFERENCE_URL"
ENV_AUTH_HEADER_KEY: Final = "EVAL_AUTHORIZATION_HEADER_KEY"
ENV_AUTH_HEADER_VALUE: Final = "EVAL_AUTHORIZATION_HEADER_VALUE"
ENV_MODEL_NAME: Final = "EVAL_MODEL_NAME"
ENV_TASK_NAME: Final = "EVAL_TASK_NAME"
ENV_CA_BUNDLE: Final = "EVAL_CA_BUNDLE"
# With tls.caConfigMap these also name the CA file, for Python's ssl and requests.
CA_FILE_ENV: Final = (ENV_CA_BUNDLE, "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
RESERVED_ENV: Final = (
    ENV_OUTPUT_DIR,
    ENV_INFERENCE_URL,
    ENV_AUTH_HEADER_KEY,
    ENV_AUTH_HEADER_VALUE,
    ENV_MODEL_NAME,
    ENV_TASK_NAME,
    ENV_CA_BUNDLE,
)
# The platform's performance knobs, injected when the spec does not set them.
DEFAULT_PARAMETERS: Final = {"MAX_CONCURRENCY": "24", "MAX_RETRY_PER_QUERY": "0"}

DEFAULT_OUTPUT_PATH: Final = "/opt/ml/output"
DEFAULT_HEADER_KEY: Final = "Authorization"
DEFAULT_RUNNER_IMAGE: Final = "eval-operator/runner:0.1.0"
DEFAULT_TIMEOUT_SECONDS: Final = 24 * 3600  # a task's own run, when timeoutSeconds is absent
DEFAULT_PROBE_TIMEOUT_SECONDS: Final = 1800
DEFAULT_START_TIMEOUT_SECONDS: Final = 600  # a pod that cannot be created or started
# A finished Job (and its pods) stays this long once its run's result is recorded
# (ttlSecondsAfterFinished), so `kubectl logs job/<name>` works for a day; 0: until its
# EvalTask goes.
DEFAULT_JOB_TTL_SECONDS: Final = 24 * 3600

# Pod layout: the probe (waits for the model, stamps the output folder) and the task run
# as init containers, the collector after them.
PROBE_CONTAINER: Final = "probe"
TASK_CONTAINER: Final = "task"
COLLECTOR_CONTAINER: Final = "collector"
OUTPUT_VOLUME: Final = "eval-output"
# The pod's own folder, shared by the probe and the collector only (the start mark).
RUN_VOLUME: Final = "eval-run"
RUN_DIR: Final = "/var/run/eval-run"
# A model's private CA (tls.caConfigMap), read-only in the probe and the task.
CA_VOLUME: Final = "eval-model-ca"
CA_DIR: Final = "/etc/eval-operator/model-ca"
CA_FILE: Final = f"{CA_DIR}/ca.crt"

# Labels and annotations on what the operator creates.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "eval-operator"
LABEL_EVALTASK: Final = f"{GROUP}/evaltask"
LABEL_EVALTASK_UID: Final = f"{GROUP}/evaltask-uid"
LABEL_MODEL: Final = f"{GROUP}/model"
LABEL_TASK: Final = f"{GROUP}/task"
LABEL_FINGERPRINT: Final = f"{GROUP}/fingerprint"
LABEL_CONTROLLER_UID: Final = "batch.kubernetes.io/controller-uid"
ANNOTATION_TEMPLATE_HASH: Final = f"{GROUP}/template-hash"
ANNOTATION_SUSPENDED_BY_OPERATOR: Final = f"{GROUP}/suspended-by-operator"
ANNOTATION_RERUN: Final = f"{GROUP}/rerun"
ANNOTATION_DEFAULT_CONTAINER: Final = "kubectl.kubernetes.io/default-container"
RERUN_FAILED: Final = "failed"
RERUN_ALL: Final = "all"
# Reconcile passes of different EvalTasks that may run at once (--workers).
DEFAULT_WORKERS: Final = 16
# How often a running run's log is read for its progress (pods/log), at most.
DEFAULT_PROGRESS_INTERVAL_SECONDS: Final = 30.0
