"""One local cluster per test session: control plane, a real node (kubelet and containerd
running our images), the CRDs and the operator.

Each test makes its own namespace. Model services listen where the node's pods reach this
machine (realnode.NODE_IP). The cluster always stops and removes its data, also
when a test fails or the run is interrupted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config

from localkube import realnode
from localkube.cluster import LocalCluster
from localkube.controlplane import ControlPlane
from localkube.mockmodel import MockModel
from tests.e2e.support import PROGRESS_INTERVAL, START_TIMEOUT, TASKS, TOKEN, Api, namespace


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    missing = realnode.environment_ok()
    assert missing is None, f"the real node cannot run here: {missing}"
    # A short start timeout, so that runs whose pod cannot start fail within a test.
    operator_args = (
        "--start-timeout",
        str(START_TIMEOUT),
        "--progress-interval",
        str(PROGRESS_INTERVAL),
    )
    with LocalCluster(
        tmp_path_factory.mktemp("cluster"), operator_args=operator_args
    ) as the_cluster:
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


@pytest.fixture
def api(cluster: LocalCluster, api_client: client.ApiClient) -> Iterator[Api]:
    """A namespace of its own, with the Secret `model-key` holding TOKEN."""
    with namespace(api_client, TOKEN) as the_api:
        yield the_api


@pytest.fixture
def models(cluster: LocalCluster) -> Iterator[list[MockModel]]:
    """Three model services that answer every task name right and check the token."""
    answers = {t: "right" for t in TASKS}
    host = realnode.pod_address_of_host()
    servers = [MockModel.answering(f"m{i}", answers, token=TOKEN, host=host) for i in range(1, 4)]
    for server in servers:
        server.__enter__()
    yield servers
    for server in servers:
        server.__exit__()
