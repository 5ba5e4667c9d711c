"""eval-operator: run LLM evaluations on Kubernetes.

Module map (pure modules never import kubernetes, kopf or httpx):
  spec        EvalTask spec models (pydantic): the one source of the API and the CRD
  statustypes EvalTask status models (pydantic)
  crd         generates crds/evaltask.yaml from those models
  naming      labels, annotations, deterministic Job names
  plan        spec + observed Jobs -> runs and the actions of one pass
  manifests   build_job / build_auth_secret as plain dicts
  jobstate    one Job and its pods -> the state of its run
  status      runs -> phase, progress, conditions, leaderboard
  conditions  condition types, reasons, and the transition-time rule
  reconcile   one pass: observe, validate, plan, act, write status (through kube.Api)
  checks      what only the operator can check: references, server-side dry-run
  probe       does a model URL answer (spec.probe)
  kube        the thin wrapper over the Kubernetes client, and its error tree
  metrics     Prometheus metrics; server serves them with the health endpoints
  handlers    kopf wiring: every event calls the same reconcile
"""

__version__ = "0.1.0"
