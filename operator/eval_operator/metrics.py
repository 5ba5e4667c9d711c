"""Prometheus metrics of the operator, in one module.

Names share the `eval_operator_` prefix and use base units; label values are bounded
(results are the constants below).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Histogram

RESULT_OK: Final = "ok"
RESULT_INVALID: Final = "invalid"
RESULT_ERROR: Final = "error"

RECONCILE_TOTAL: Final = Counter(
    "eval_operator_reconcile_total", "Reconcile passes by result.", ["result"]
)
RECONCILE_SECONDS: Final = Histogram(
    "eval_operator_reconcile_duration_seconds", "Duration of one reconcile pass.", ["result"]
)
JOBS_CREATED_TOTAL: Final = Counter(
    "eval_operator_jobs_created_total", "Jobs created for evaluation runs."
)
