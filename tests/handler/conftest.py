"""Handler tier: the raw Kubernetes client must never be touched."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture(autouse=True)
def raw_client_tripwire(monkeypatch):
    from kubernetes.client import api_client

    real = api_client.ApiClient.call_api
    test_thread = threading.get_ident()

    def touched(*args, **kwargs):
        # Only the test's own calls (and the threads reconcile starts from it) are ours;
        # a local cluster left running by the end-to-end tier keeps its own client.
        if threading.get_ident() == test_thread or threading.current_thread().name.startswith(
            "asyncio_"
        ):
            raise AssertionError("the raw Kubernetes client was called in a handler-level test")
        return real(*args, **kwargs)

    monkeypatch.setattr(api_client.ApiClient, "call_api", touched)


@pytest.fixture(autouse=True)
def fresh_redaction_memory(monkeypatch):
    """The fake API's uids repeat from test to test: each test remembers only its own
    secret values (redaction.Memory is keyed by the EvalTask's uid)."""
    from eval_operator import redaction

    monkeypatch.setattr(redaction, "MEMORY", redaction.Memory())


@pytest.fixture(autouse=True)
def fresh_dry_run_inputs(monkeypatch):
    """Likewise the config versions each EvalTask's last dry-run was made with."""
    from eval_operator import checks

    monkeypatch.setattr(checks, "DRY_RUNS", checks.DryRunInputs())
