"""Chart tier: `helm lint` and `helm template` with the pinned helm; no cluster needed."""

from __future__ import annotations

import pytest

from tests.chart.support import Helm


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm"))
