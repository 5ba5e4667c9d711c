"""The EvalTask spec: pydantic models that are the one source of the API.

The CRD (crds/evaltask.yaml) is generated from these models by `crd.py`, so field
descriptions and rules live here. Rules the CRD can express are exported to it as
`x-kubernetes-validations` (CEL) or list-map keys, so `kubectl apply` rejects bad input
early; `parse_spec` checks everything again because the installed CRD may be older than
the operator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from eval_operator import constants

# Pure: httpx.URL only parses. The runner sends its requests with the same parser, so a URL
# accepted here is one the probe and the evaluation can use.
from eval_runner import urls

DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SUBDOMAIN: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# What Kubernetes accepts as the name of a Secret, ConfigMap, claim, service account or
# priority class. A name is a segment of the URL the operator (or the kubelet) reads the
# object at, so one such as "../../kube-system/secrets/x" must never get that far.
DNS_SUBDOMAIN_PATTERN: Final = f"^{_SUBDOMAIN}$"
OPTIONAL_DNS_SUBDOMAIN_PATTERN: Final = f"^({_SUBDOMAIN})?$"  # "": not set
ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
HEADER_PATTERN: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
VERSION_PATTERN: Final = r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[a-f0-9]{64})$"
URL_PATTERN: Final = r"^https?://[^\s/$.?#][^\s]*$"
MAX_MODELS: Final = 64
MAX_TASKS: Final = 128
MAX_ENV: Final = 128
MAX_MOUNTS: Final = 32
# models x tasks: keeps the EvalTask's status (one compact entry per run) far below etcd's
# object size limit (tests/unit/test_object_sizes.py measures the largest one).
MAX_RUNS: Final = 1024
# A task's weighted metrics: a few in practice; the bound keeps the largest EvalTask small.
MAX_WEIGHTED_METRICS: Final = 16
MAX_METRIC_NAME: Final = 100  # as runtypes.MAX_METRIC_NAME: a recorded metric's name
MAX_TIMEOUT_SECONDS: Final = 30 * 24 * 3600

DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=63)]
DnsSubdomain = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
# Pod settings that Kubernetes reads "" as unset (API.md shows priorityClassName: "").
OptionalDnsSubdomain = Annotated[
    str, StringConstraints(pattern=OPTIONAL_DNS_SUBDOMAIN_PATTERN, max_length=253)
]
ConfigKey = Annotated[str, StringConstraints(min_length=1, max_length=253)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN, max_length=256)]


def _quantity(value: Any) -> Any:
    # Checked before the union so the error names the field, not a union branch.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "InvalidQuantity", "a quantity is an integer or a string such as '500m' or '2Gi'"
        )
    return value


# Quantities ("500m", "2Gi", 1) as Kubernetes writes them: an int or a string.
Quantity = Annotated[
    int | str,
    BeforeValidator(_quantity),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]

_RESERVED_LIST: Final = "[" + ", ".join(f"'{n}'" for n in constants.RESERVED_ENV) + "]"
_RESERVED_MESSAGE: Final = (
    "sets a reserved name: " + ", ".join(constants.RESERVED_ENV) + (" are injected by the operator")
)


def _map_list(**extra: Any) -> dict[str, Any]:
    """Schema keys that make a name-keyed list unique by name in the API server."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], **extra}


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    validation = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return {"x-kubernetes-validations": [validation]}


def _parameter_keys_rules() -> dict[str, Any]:
    """CEL for map keys: CRDs cannot say it with patternProperties."""
    return {
        "x-kubernetes-validations": [
            {
                "rule": f"self.all(k, k.matches('{ENV_NAME_PATTERN}'))",
                "message": "parameter names must be valid environment variable names",
            },
            {
                "rule": f"self.all(k, !(k in {_RESERVED_LIST}))",
                "message": f"parameters {_RESERVED_MESSAGE}",
            },
        ]
    }


class _ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=False,
    )


class _KubeObject(BaseModel):
    """The fields of a Kubernetes object that the operator relies on; others pass through."""

    # By the camelCase name only: a snake_case key is another (unknown) field, so
    # `secret_name: x` does not stand in for the secretName that checks.py reads.
    model_config = ConfigDict(extra="allow", alias_generator=to_camel)


def _checked(model: type[BaseModel]) -> GetPydanticSchema:
    """A free-form Kubernetes object checked against `model` (its errors name the field
    inside it, its schema goes into the CRD) but kept as the dict the user wrote: the pod,
    the fingerprint and checks.py see exactly what they saw before it was checked."""

    def schema(source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        def keep(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
            validate(value)
            return dict(value)

        as_dict = core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
        return core_schema.no_info_wrap_validator_function(
            keep,
            handler(model),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value, return_schema=as_dict
            ),
        )

    return GetPydanticSchema(schema)


class KeySelector(_KubeObject):
    """A key of a Secret or ConfigMap in the EvalTask's namespace (an EnvVarSource's)."""

    name: DnsSubdomain = Field(description="The object's name (DNS-1123 subdomain).")
    key: ConfigKey = Field(description="The key within it.")


class EnvVarSource(_KubeObject):
    """A Kubernetes EnvVarSource; the operator reads the Secrets and ConfigMaps it names."""

    secret_key_ref: KeySelector | None = Field(default=None, description="A Secret's key.")
    config_map_key_ref: KeySelector | None = Field(default=None, description="A ConfigMap's key.")


class SecretVolume(_KubeObject):
    """A SecretVolumeSource; the operator reads the Secret it names."""

    secret_name: DnsSubdomain = Field(description="The Secret's name (DNS-1123 subdomain).")


class ConfigMapVolume(_KubeObject):
    """A ConfigMapVolumeSource; the operator reads the ConfigMap it names."""

    name: DnsSubdomain = Field(description="The ConfigMap's name (DNS-1123 subdomain).")


class ClaimVolume(_KubeObject):
    """A PersistentVolumeClaimVolumeSource."""

    claim_name: DnsSubdomain = Field(description="The claim's name (DNS-1123 subdomain).")


class PullSecret(_KubeObject):
    """A LocalObjectReference to an image pull Secret."""

    name: OptionalDnsSubdomain | None = Field(
        default=None, description="The Secret's name (DNS-1123 subdomain)."
    )


def _check_reserved(names: list[str]) -> None:
    bad = [n for n in names if n in constants.RESERVED_ENV]
    if bad:
        raise PydanticCustomError(
            "ReservedEnvName",
            "{names} cannot be set here: the operator injects it",
            {"names": ", ".join(bad)},
        )


class SecretKeyRef(_ApiModel):
    """A key of a Secret in the EvalTask's namespace."""

    name: DnsSubdomain = Field(description="The Secret's name (DNS-1123 subdomain).")
    key: str = Field(min_length=1, max_length=253, description="The key within the Secret.")


class Auth(_ApiModel):
    """How the evaluation authenticates to the model service. Exactly one of secretRef/value."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            "has(self.secretRef) != has(self.value)",
            "exactly one of auth.secretRef or auth.value must be set",
        )
    )

    header_key: str = Field(
        default=constants.DEFAULT_HEADER_KEY,
        pattern=HEADER_PATTERN,
        max_length=256,
        description="HTTP header name, injected as EVAL_AUTHORIZATION_HEADER_KEY. "
        "Default: Authorization.",
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="The Secret key whose value is injected as EVAL_AUTHORIZATION_HEADER_VALUE "
        "through secretKeyRef; the value is never copied.",
    )
    value: str | None = Field(
        default=None,
        repr=False,
        min_length=1,
        description="A literal header value (e.g. 'Bearer sk-...'). Allowed, but the operator "
        "moves it into a Secret owned by the EvalTask and posts a Warning event: prefer secretRef.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Auth:
        if (self.secret_ref is None) == (self.value is None):
            raise PydanticCustomError(
                "AuthSourceInvalid", "exactly one of auth.secretRef or auth.value must be set"
            )
        return self


class ConfigMapKeyRef(_ApiModel):
    """A key of a ConfigMap in the EvalTask's namespace."""

    name: DnsSubdomain = Field(description="The ConfigMap's name (DNS-1123 subdomain).")
    key: str = Field(min_length=1, max_length=253, description="The key within the ConfigMap.")


class ModelTls(_ApiModel):
    """TLS settings for an https model url."""

    ca_config_map: ConfigMapKeyRef = Field(
        description="A ConfigMap key holding the PEM CA bundle that signed the model service's "
        "certificate; mounted read-only into the probe and the task, named by EVAL_CA_BUNDLE, "
        "SSL_CERT_FILE and REQUESTS_CA_BUNDLE."
    )


class ModelService(_ApiModel):
    """An OpenAI-compatible model service under evaluation."""

    name: DnsLabel = Field(description="Unique model name (DNS-1123 label); EVAL_MODEL_NAME.")
    url: str = Field(
        pattern=URL_PATTERN,
        max_length=2048,
        description="The inference endpoint, e.g. https://host/v1/chat/completions; "
        "EVAL_INFERENCE_URL.",
    )
    auth: Auth | None = Field(default=None, description="Optional authentication.")
    tls: ModelTls | None = Field(default=None, description="Optional: a private CA.")
    parameters: dict[EnvName, str] = Field(
        default_factory=dict,
        max_length=MAX_ENV,
        description="Environment for this model's Jobs; overrides spec.parameters.",
        json_schema_extra=_parameter_keys_rules(),
    )

    @field_validator("url")
    @classmethod
    def _parsable(cls, value: str) -> str:
        why = urls.problem(value)
        if why:
            raise PydanticCustomError("InvalidURL", "{why}", {"why": why})
        return value

    @field_validator("parameters")
    @classmethod
    def _no_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        _check_reserved(list(value))
        return value


class EnvVar(_ApiModel):
    """A Kubernetes EnvVar: a literal value or a valueFrom source."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            "!(has(self.value) && has(self.valueFrom))",
            "an env var sets value or valueFrom, not both",
        )
    )

    name: EnvName = Field(description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: Annotated[dict[str, Any], _checked(EnvVarSource)] | None = Field(
        default=None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise PydanticCustomError(
                "EnvSourceInvalid", "an env var sets value or valueFrom, not both"
            )
        return self


VOLUME_SOURCES: Final = (
    "persistentVolumeClaim",
    "configMap",
    "secret",
    "nfs",
    "hostPath",
    "emptyDir",
)


class VolumeSource(_ApiModel):
    """Exactly one Kubernetes volume source, written as in a Pod's volumes."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            "[" + ", ".join(f"has(self.{s})" for s in VOLUME_SOURCES) + "]"
            ".filter(x, x).size() == 1",
            "a mount source sets exactly one of: " + ", ".join(VOLUME_SOURCES),
        )
    )

    persistent_volume_claim: Annotated[dict[str, Any], _checked(ClaimVolume)] | None = Field(
        default=None, description="A PersistentVolumeClaimVolumeSource, e.g. {claimName: x}."
    )
    config_map: Annotated[dict[str, Any], _checked(ConfigMapVolume)] | None = Field(
        default=None, description="A ConfigMapVolumeSource."
    )
    secret: Annotated[dict[str, Any], _checked(SecretVolume)] | None = Field(
        default=None, description="A SecretVolumeSource."
    )
    nfs: dict[str, Any] | None = Field(default=None, description="An NFSVolumeSource.")
    host_path: dict[str, Any] | None = Field(default=None, description="A HostPathVolumeSource.")
    empty_dir: dict[str, Any] | None = Field(default=None, description="An EmptyDirVolumeSource.")

    @model_validator(mode="after")
    def _exactly_one(self) -> VolumeSource:
        if len(self.as_volume()) != 1:
            raise PydanticCustomError(
                "MountSourceInvalid",
                "a mount source sets exactly one of: " + ", ".join(VOLUME_SOURCES),
            )
        return self

    def as_volume(self) -> dict[str, Any]:
        """The source as the body of a Pod volume (camelCase keys)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Mount(_ApiModel):
    """A storage mount for the task's container."""

    name: DnsLabel = Field(description="Unique mount name (DNS-1123 label); the volume's name.")
    mount_path: str = Field(
        pattern=r"^/", max_length=1024, description="Absolute path inside the container."
    )
    sub_path: str | None = Field(
        default=None, max_length=1024, description="Optional path within the volume."
    )
    read_only: bool = Field(default=False, description="Mount read-only.")
    source: VolumeSource = Field(description="The volume source.")


class Resources(_ApiModel):
    """ResourceRequirements of the task's container."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="Requests.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Limits.")


class Results(_ApiModel):
    """What the task writes under EVAL_OUTPUT_DIR, and where."""

    # The collector's formats (runner-image/eval_runner/formats.py); README.md names the
    # metrics each gives.
    format: Literal["metrics-json", "lm-eval", "evalscope", "opencompass", "bfcl"] = Field(
        default="metrics-json",
        description="metrics-json (default), lm-eval (lm-evaluation-harness results_*.json), "
        "evalscope (reports/<model>/<dataset>.json), opencompass (OpenCompass "
        "summary/summary_*.csv) or bfcl (BFCL score/**/BFCL_v*_<category>_score.json).",
    )
    path: str = Field(
        default="",
        max_length=1024,
        pattern=r"^([^/].*)?$",
        description="A file or folder below EVAL_OUTPUT_DIR; default: the format's file "
        "anywhere below it (the newest).",
    )

    @field_validator("path")
    @classmethod
    def _below_output(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise PydanticCustomError(
                "ResultsPathInvalid",
                "{path} must stay below EVAL_OUTPUT_DIR",
                {"path": repr(value)},
            )
        return value


def image_has_tag(image: str) -> bool:
    """Whether an image reference names its tag or digest: an '@', or a ':' after the last
    '/' (one before it is a registry's port, as in localhost:5000/evals)."""
    return "@" in image or ":" in image.rsplit("/", 1)[-1]


_TAG_CONFLICT: Final = "image names its tag or digest and version is set: set one of them"


_TAG_RULE: Final = _cel(
    "!has(self.version) || !has(self.image) || !self.image.matches('@|:[^/]*$')",
    _TAG_CONFLICT,
    ".version",
)
_IMAGE_DESCRIPTION: Final = (
    "The image. A tag or digest in it (repo:v1, repo@sha256:...) is used as written, and "
    "version must then be unset; without one, version gives the tag. A ':' before the last "
    "'/' is a registry's port (localhost:5000/evals)."
)
Image = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^\S+$")]

# What a tasks[] entry with a configRef may not set: the config's alone (the overrides are
# version, env, args, timeoutSeconds and weight).
_NOT_OVERRIDES: Final = (
    "command",
    "mounts",
    "resources",
    "retries",
    "results",
    "primary_metric",
    "metric_weights",
)
_OVERRIDE_WORDS: Final = "version, env, args, timeoutSeconds and weight"


class _TaskFields(_ApiModel):
    """Everything a task configuration sets but its name."""

    image: Image | None = Field(default=None, description=_IMAGE_DESCRIPTION)
    version: str = Field(
        default="latest",
        pattern=VERSION_PATTERN,
        description="The image's tag, or a digest 'sha256:...', when image names neither. "
        "Default: latest.",
    )
    command: list[str] | None = Field(
        default=None, description="Entrypoint override; the image's entrypoint when absent."
    )
    args: list[str] | None = Field(default=None, description="Arguments to the entrypoint.")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=MAX_ENV,
        description="Environment for the task's container (Kubernetes EnvVar list). "
        "Applied on top of the injected variables; reserved EVAL_* names are not allowed.",
        json_schema_extra=_map_list(
            **_cel(
                f"self.all(e, !(e.name in {_RESERVED_LIST}))",
                f"env {_RESERVED_MESSAGE}",
            )
        ),
    )
    mounts: list[Mount] = Field(
        default_factory=list,
        max_length=MAX_MOUNTS,
        description="Storage mounts.",
        json_schema_extra=_map_list(),
    )
    resources: Resources | None = Field(default=None, description="Resource requirements.")
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="Bounds the task's own run. Default: the operator's --default-timeout "
        "(24h unless set). The Job's activeDeadlineSeconds is this plus probeTimeoutSeconds.",
    )
    retries: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Failed attempts retried (the Job's backoffLimit). Default: 0. Disruptions "
        "(eviction, preemption, node drain) never count.",
    )
    results: Results | None = Field(
        default=None, description="The results' format and path. Default: metrics.json."
    )
    primary_metric: str | None = Field(
        default=None,
        min_length=1,
        description="The metric that is the run's score. Default: the run's first metric.",
    )
    metric_weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_WEIGHTED_METRICS,
        description="Instead of primaryMetric: metric -> weight (>= 0, not all 0); the run's "
        "score is these metrics' weighted mean.",
    )
    weight: float = Field(
        default=1.0, ge=0, description="The task's weight in the leaderboard. Default: 1."
    )

    @model_validator(mode="after")
    def _one_score_rule(self) -> _TaskFields:
        if self.primary_metric is not None and self.metric_weights is not None:
            raise PydanticCustomError(
                "ScoreRuleInvalid", "set primaryMetric or metricWeights, not both"
            )
        long = [m for m in self.metric_weights or {} if not 0 < len(m) <= MAX_METRIC_NAME]
        if long:
            raise PydanticCustomError(
                "ScoreRuleInvalid",
                "metricWeights names metrics of 1 to {limit} characters; {name} is not",
                {"limit": MAX_METRIC_NAME, "name": repr(long[0][:40])},
            )
        if self.metric_weights is not None and not any(self.metric_weights.values()):
            raise PydanticCustomError(
                "ScoreRuleInvalid", "metricWeights needs a weight above 0 (they are all 0)"
            )
        return self

    @field_validator("version")
    @classmethod
    def _one_tag(cls, value: str, info: ValidationInfo) -> str:
        # Runs only for a version the user wrote (pydantic does not validate defaults), so
        # `image: repo:v1` alone is fine and `version: latest` next to it is not.
        image = info.data.get("image")
        if image is not None and image_has_tag(image):
            raise PydanticCustomError(
                "ImageTagConflict",
                # pydantic fills in {image} as is: no !r conversion.
                "image {image} names its tag or digest: set it there or in version, not both",
                {"image": repr(image[:100])},
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_ok(cls, value: list[EnvVar]) -> list[EnvVar]:
        _check_reserved([e.name for e in value])
        return value

    @property
    def image_ref(self) -> str:
        """The image as the pod pulls it (version stays "latest" when image has a tag)."""
        if self.image is None:
            raise ValueError("a task with a configRef has an image once it is resolved")
        if image_has_tag(self.image):
            return self.image
        sep = "@" if self.version.startswith("sha256:") else ":"
        return f"{self.image}{sep}{self.version}"


class TaskSettings(_TaskFields):
    """A saved task configuration: the spec of an EvalTaskConfig or ClusterEvalTaskConfig,
    which tasks[] entries name in their configRef."""

    model_config = ConfigDict(json_schema_extra=_TAG_RULE)

    image: Image = Field(description=_IMAGE_DESCRIPTION)


class ConfigRef(_ApiModel):
    """A saved task configuration, by kind and name."""

    name: DnsSubdomain = Field(description="The config's name.")
    kind: Literal["EvalTaskConfig", "ClusterEvalTaskConfig"] = Field(
        default="EvalTaskConfig",
        description="EvalTaskConfig (in the EvalTask's namespace, the default) or "
        "ClusterEvalTaskConfig (cluster-wide).",
    )


def _entry_rules() -> dict[str, Any]:
    rules = [
        {
            "rule": "has(self.configRef) || has(self.image)",
            "message": "image is required (or a configRef naming a saved task configuration)",
            "fieldPath": ".image",
        },
        {
            "rule": "!has(self.configRef) || !has(self.image)",
            "message": "image is set by the configRef's task configuration: set one of them",
            "fieldPath": ".image",
        },
    ]
    for field in _NOT_OVERRIDES:
        camel = to_camel(field)
        rules.append(
            {
                "rule": f"!has(self.configRef) || !has(self.{camel})",
                "message": f"{camel} comes from the configRef's task configuration: with a "
                f"configRef, a task overrides only {_OVERRIDE_WORDS}",
                "fieldPath": f".{camel}",
            }
        )
    return {"x-kubernetes-validations": [*_TAG_RULE["x-kubernetes-validations"], *rules]}


class TaskConfig(_TaskFields):
    """One evaluation set packaged as a container image: a task configuration, written
    in full or as a configRef to a saved one plus overrides."""

    model_config = ConfigDict(json_schema_extra=_entry_rules())

    name: DnsLabel = Field(description="Unique name of the evaluation set; EVAL_TASK_NAME.")
    config_ref: ConfigRef | None = Field(
        default=None,
        description="A saved task configuration (EvalTaskConfig or ClusterEvalTaskConfig) "
        f"that gives this task; the entry may override {_OVERRIDE_WORDS}. Resolved when a "
        "run is created: the run keeps what it was created with.",
    )

    @model_validator(mode="after")
    def _image_or_ref(self) -> TaskConfig:
        if self.config_ref is None and self.image is None:
            raise PydanticCustomError(
                "ImageMissing",
                "image is required (or a configRef naming a saved task configuration)",
            )
        if self.config_ref is None:
            return self
        if self.image is not None:
            raise PydanticCustomError(
                "ConfigRefConflict",
                "image is set by the configRef's task configuration: set one of them",
            )
        written = [f for f in _NOT_OVERRIDES if f in self.model_fields_set]
        if written:
            raise PydanticCustomError(
                "ConfigRefConflict",
                "{field} comes from the configRef's task configuration: with a configRef, a "
                "task overrides only {words}",
                {"field": to_camel(written[0]), "words": _OVERRIDE_WORDS},
            )
        return self


class ClaimRef(_ApiModel):
    """A PersistentVolumeClaim in the EvalTask's namespace."""

    claim_name: DnsSubdomain = Field(description="The claim's name (DNS-1123 subdomain).")


class Output(_ApiModel):
    """Where runs write their results (EVAL_OUTPUT_DIR)."""

    mount_path: str = Field(
        default=constants.DEFAULT_OUTPUT_PATH,
        pattern=r"^/",
        max_length=1024,
        description="EVAL_OUTPUT_DIR. Default: /opt/ml/output.",
    )
    persistent_volume_claim: ClaimRef | None = Field(
        default=None,
        description="When set, each run writes under the subPath <evaltask>/<model>/<task> of "
        "this claim; otherwise an emptyDir.",
    )


class PodTemplate(_ApiModel):
    """Pod settings for every Job."""

    service_account_name: OptionalDnsSubdomain | None = Field(
        default=None, description="Pod service account (DNS-1123 subdomain)."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels on each Job and its pod (e.g. kueue.x-k8s.io/queue-name).",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations on each Job and its pod."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector.")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="Tolerations.")
    image_pull_secrets: list[Annotated[dict[str, Any], _checked(PullSecret)]] = Field(
        default_factory=list, description="Image pull secrets ({name: ...})."
    )
    priority_class_name: OptionalDnsSubdomain | None = Field(
        default=None, description="Priority class (DNS-1123 subdomain)."
    )
    security_context: dict[str, Any] | None = Field(
        default=None, description="Pod securityContext."
    )


class EvalTaskSpec(_ApiModel):
    """What to evaluate: every model service on every task, one Job per (model, task)."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            f"self.models.size() * self.tasks.size() <= {MAX_RUNS}",
            f"at most {MAX_RUNS} runs (models x tasks) per EvalTask",
        )
    )

    models: list[ModelService] = Field(
        min_length=1,
        max_length=MAX_MODELS,
        description="Model services under evaluation; each runs its tasks serially.",
        json_schema_extra=_map_list(),
    )
    tasks: list[TaskConfig] = Field(
        min_length=1,
        max_length=MAX_TASKS,
        description="Task configurations, run in list order for each model.",
        json_schema_extra=_map_list(),
    )
    parameters: dict[EnvName, str] = Field(
        default_factory=dict,
        max_length=MAX_ENV,
        description="Environment for every Job. MAX_CONCURRENCY=24 and MAX_RETRY_PER_QUERY=0 "
        "are injected when absent.",
        json_schema_extra=_parameter_keys_rules(),
    )
    output: Output = Field(default_factory=Output, description="Output volume.")
    parallelism: int = Field(
        default=0, ge=0, description="Most model chains running at once; 0: all."
    )
    suspend: bool = Field(
        default=False,
        description="true: no new Jobs, running Jobs suspended; false resumes them.",
    )
    reuse: bool = Field(
        default=False,
        description="Reuse results of another EvalTask's Succeeded run with the same fingerprint.",
    )
    probe: bool = Field(
        default=True,
        description="Each run's pod first waits until its model answers (from the pod's own "
        "network, with the run's auth header), at most probeTimeoutSeconds.",
    )
    probe_timeout_seconds: int = Field(
        default=constants.DEFAULT_PROBE_TIMEOUT_SECONDS,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="How long a run's probe may wait for its model before the run fails. "
        "Default: 1800.",
    )
    template: PodTemplate = Field(default_factory=PodTemplate, description="Pod settings.")

    @field_validator("parameters")
    @classmethod
    def _no_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        _check_reserved(list(value))
        return value

    @model_validator(mode="after")
    def _bounded_matrix(self) -> EvalTaskSpec:
        runs = len(self.models) * len(self.tasks)
        if runs > MAX_RUNS:
            raise PydanticCustomError(
                "TooManyRuns",
                "{runs} runs (models x tasks) is more than the {limit} an EvalTask may have",
                {"runs": runs, "limit": MAX_RUNS},
            )
        return self

    @field_validator("models", "tasks")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for item in value:
            if item.name in seen:
                raise PydanticCustomError(
                    "DuplicateName", "name {name} appears more than once", {"name": repr(item.name)}
                )
            seen.add(item.name)
        return value


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: the field, a CamelCase reason and a message."""

    field: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SpecInvalid(Exception):
    def __init__(self, problems: list[SpecProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def field_path(loc: tuple[int | str, ...]) -> str:
    """('tasks', 1, 'env', 0, 'name') -> 'spec.tasks[1].env[0].name'."""
    path = "spec"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic's marker for "the key of the previous segment"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            path += f".{part}"
        else:
            path += f"[{part!r}]"
    return path


def _reason(error_type: str) -> str:
    # Our own errors carry CamelCase reasons; pydantic's built-in ones are snake_case.
    return error_type if error_type[:1].isupper() else "InvalidField"


def problems_of(error: ValidationError) -> list[SpecProblem]:
    """Each of pydantic's errors as a SpecProblem naming its field (spec.tasks[1].image)."""
    return [
        SpecProblem(field_path(err["loc"]), _reason(err["type"]), err["msg"])
        for err in error.errors(include_url=False, include_input=False)
    ]


def parse_spec(raw: Any) -> EvalTaskSpec:
    """Validate a raw spec dict; raise SpecInvalid naming every bad field."""
    try:
        spec = EvalTaskSpec.model_validate(raw if raw is not None else {})
    except ValidationError as e:
        raise SpecInvalid(problems_of(e)) from None
    problems = check_mounts(spec)
    if problems:
        raise SpecInvalid(problems)
    return spec


def check_mounts(spec: EvalTaskSpec) -> list[SpecProblem]:
    """Cross-field rules of mounts: the operator's volume names and the output path are taken."""
    problems = []
    for ti, task in enumerate(spec.tasks):
        for mi, mount in enumerate(task.mounts):
            where = f"spec.tasks[{ti}].mounts[{mi}]"
            if mount.name in (constants.OUTPUT_VOLUME, constants.RUN_VOLUME, constants.CA_VOLUME):
                problems.append(
                    SpecProblem(
                        f"{where}.name",
                        "ReservedMountName",
                        f"{mount.name!r} is the name of a volume the operator adds",
                    )
                )
            if mount.mount_path.rstrip("/") == constants.CA_DIR and any(m.tls for m in spec.models):
                problems.append(
                    SpecProblem(
                        f"{where}.mountPath",
                        "MountPathConflict",
                        f"{mount.mount_path} is where a model's tls.caConfigMap is mounted",
                    )
                )
            if mount.mount_path.rstrip("/") == spec.output.mount_path.rstrip("/"):
                problems.append(
                    SpecProblem(
                        f"{where}.mountPath",
                        "MountPathConflict",
                        f"{mount.mount_path} is the output mount path (spec.output.mountPath)",
                    )
                )
    return problems
