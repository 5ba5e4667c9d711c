"""Handler tier: the raw Kubernetes client must never be touched."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def raw_client_tripwire(monkeypatch):
    from kubernetes.client import api_client

    def touched(*args, **kwargs):
        raise AssertionError("the raw Kubernetes client was called in a handler-level test")

    monkeypatch.setattr(api_client.ApiClient, "call_api", touched)
