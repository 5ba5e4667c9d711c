"""One local cluster per test session: control plane, local node, CRD and operator.

Each test makes its own namespace. The cluster always stops and removes its data, also
when a test fails or the run is interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from localkube.cluster import LocalCluster
from localkube.controlplane import ControlPlane
from tests.e2e.support import ECHO, ECHO_IMAGE


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    images = {ECHO_IMAGE: [sys.executable, "-c", ECHO]}
    with LocalCluster(tmp_path_factory.mktemp("cluster"), images=images) as the_cluster:
        yield the_cluster
        log = the_cluster.operator_log
        text = log.read_text() if log.exists() else ""
        # A traceback in the operator's log is a bug even if every assertion held.
        assert "Traceback" not in text, text[-5000:]


@pytest.fixture(scope="session")
def control_plane(cluster: LocalCluster) -> ControlPlane:
    return cluster.control_plane


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api
    api.close()
