"""Fixtures for the runner's tests."""

from __future__ import annotations

import pytest

from tests.runner import support


@pytest.fixture(params=["false", "true"], ids=["in process", "second process"])
def http_process(request, monkeypatch):
    """Each test of a module that uses this runs twice: the model's requests sent from the
    runner's own process, then from its second one (EVAL_HTTP_PROCESS)."""
    monkeypatch.setattr(support, "HTTP_PROCESS", request.param)
    return request.param == "true"
