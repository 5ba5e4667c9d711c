"""Names shared by the API, the manifests and the status: one place to read them."""

from __future__ import annotations

from typing import Final

GROUP: Final = "evaloperator.io"
VERSION: Final = "v1alpha1"
KIND: Final = "EvalTask"
PLURAL: Final = "evaltasks"
SINGULAR: Final = "evaltask"
SHORT_NAME: Final = "et"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# Environment the operator injects; a spec may not set these itself.
ENV_OUTPUT_DIR: Final = "EVAL_OUTPUT_DIR"
ENV_INFERENCE_URL: Final = "EVAL_INFERENCE_URL"
ENV_AUTH_HEADER_KEY: Final = "EVAL_AUTHORIZATION_HEADER_KEY"
ENV_AUTH_HEADER_VALUE: Final = "EVAL_AUTHORIZATION_HEADER_VALUE"
ENV_MODEL_NAME: Final = "EVAL_MODEL_NAME"
ENV_TASK_NAME: Final = "EVAL_TASK_NAME"
RESERVED_ENV: Final = (
    ENV_OUTPUT_DIR,
    ENV_INFERENCE_URL,
    ENV_AUTH_HEADER_KEY,
    ENV_AUTH_HEADER_VALUE,
    ENV_MODEL_NAME,
    ENV_TASK_NAME,
)
# The platform's performance knobs, injected when the spec does not set them.
DEFAULT_PARAMETERS: Final = {"MAX_CONCURRENCY": "24", "MAX_RETRY_PER_QUERY": "0"}

DEFAULT_OUTPUT_PATH: Final = "/opt/ml/output"
DEFAULT_HEADER_KEY: Final = "Authorization"
DEFAULT_RUNNER_IMAGE: Final = "eval-operator/runner:0.1.0"

# Pod layout: the task runs as an init container, the collector after it.
TASK_CONTAINER: Final = "task"
COLLECTOR_CONTAINER: Final = "collector"
OUTPUT_VOLUME: Final = "eval-output"

# Labels and annotations on what the operator creates.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "eval-operator"
LABEL_EVALTASK: Final = f"{GROUP}/evaltask"
LABEL_EVALTASK_UID: Final = f"{GROUP}/evaltask-uid"
LABEL_MODEL: Final = f"{GROUP}/model"
LABEL_TASK: Final = f"{GROUP}/task"
LABEL_FINGERPRINT: Final = f"{GROUP}/fingerprint"
ANNOTATION_SUSPENDED_BY_OPERATOR: Final = f"{GROUP}/suspended-by-operator"
ANNOTATION_RERUN: Final = f"{GROUP}/rerun"
ANNOTATION_DEFAULT_CONTAINER: Final = "kubectl.kubernetes.io/default-container"
RERUN_FAILED: Final = "failed"
RERUN_ALL: Final = "all"
