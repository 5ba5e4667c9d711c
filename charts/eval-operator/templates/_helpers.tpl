{{/* The chart's name, or nameOverride. */}}
{{- define "eval-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: <release>-<chart>, or just <release> when it already contains the
chart's name; at most 63 characters (a DNS-1123 label).
*/}}
{{- define "eval-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* helm.sh/chart: <name>-<version>. */}}
{{- define "eval-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "eval-operator.labels" -}}
helm.sh/chart: {{ include "eval-operator.chart" . }}
{{ include "eval-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: eval-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* What the Deployment, the Service and the ServiceMonitor select the operator's pod by. */}}
{{- define "eval-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eval-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "eval-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eval-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: repository@digest, else
repository:tag, the tag defaulting to the chart's appVersion.
Call with (dict "image" .Values.image "root" $).
*/}}
{{- define "eval-operator.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs in every namespace it serves: in a ClusterRole when it serves
all namespaces, else in a Role in each. Only the verbs it uses; tests/e2e/test_helm_rbac.py
removes each verb in turn and shows what breaks (README.md, "Install", lists why each is here).
*/}}
{{- define "eval-operator.namespacedRules" -}}
# kopf lists and watches EvalTasks; each reconcile pass reads its EvalTask afresh; removing
# the rerun annotation is a patch.
- apiGroups: ["evaloperator.io"]
  resources: ["evaltasks"]
  verbs: ["get", "list", "watch", "patch"]
# Progress, compact runs, leaderboard and conditions.
- apiGroups: ["evaloperator.io"]
  resources: ["evaltasks/status"]
  verbs: ["patch"]
# Objects the EvalTask owns with blockOwnerDeletion (its EvalRuns, its auth Secret): the
# OwnerReferencesPermissionEnforcement admission plugin asks for this.
- apiGroups: ["evaloperator.io"]
  resources: ["evaltasks/finalizers"]
  verbs: ["update"]
# One EvalRun per run, the durable record: listed each pass, watched (a deleted one reruns
# its run), created, deleted when an edit or a rerun replaces the run, and patched to adopt
# a finished record left by an earlier EvalTask of the same name (an orphaning delete).
- apiGroups: ["evaloperator.io"]
  resources: ["evalruns"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Each run's state and result.
- apiGroups: ["evaloperator.io"]
  resources: ["evalruns/status"]
  verbs: ["patch"]
# Jobs are owned by their EvalRun with blockOwnerDeletion (as above).
- apiGroups: ["evaloperator.io"]
  resources: ["evalruns/finalizers"]
  verbs: ["update"]
# One Job per run: watched for completion, created (first as a server-side dry run that
# checks the spec), patched to suspend and resume, deleted when an edit or a rerun replaces it.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The Jobs' pods: the collector's result, exit codes, log tails, why a pod is waiting.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The end of a running task's log: its in-job progress (no exec, no rights for the pod).
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Why a Job cannot create its pod (the Job controller's FailedCreate events: a quota, a
# missing service account).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
# Referenced Secrets must exist with their key (their values are redacted from what the
# operator writes); a literal auth.value goes into a Secret the EvalTask owns.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# ConfigMaps that tasks reference (env, mounts) must exist with their keys.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# The operator's own events on EvalTasks: JobCreated, RunSucceeded, RunFailed, invalid specs.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
# Saved task configurations that tasks name in their configRef: read when a run is
# created, watched so that runs waiting for one start once it exists.
- apiGroups: ["evaloperator.io"]
  resources: ["evaltaskconfigs"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* The rules that are cluster-wide in both modes: kopf follows the CRDs, and the
cluster-scoped configs. */}}
{{- define "eval-operator.clusterRules" -}}
# kopf lists and watches CRDs, so it serves EvalTasks also when their CRD is created (or
# recreated) after the operator started.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# ClusterEvalTaskConfigs are cluster-scoped: every namespace's tasks may name one.
- apiGroups: ["evaloperator.io"]
  resources: ["clusterevaltaskconfigs"]
  verbs: ["get", "list", "watch"]
{{- end }}
