"""One small real Ray cluster for the whole test session: a head and two worker nodes.

All on this machine (``ray.cluster_utils.Cluster``): single-node tests run on
it as on any Ray; multi-node tests place work with the nodes' resources
(``node_head``, ``node_a``, ``node_b``). Tests live in the package ``tests``
and pytest runs from the repository root, which Ray puts on every local
worker's ``sys.path``: functions defined in test modules are imported by
reference in the workers, as user code would be.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

import rayisolates

MB = 1024 * 1024


# A cluster started elsewhere (``cluster/netns-cluster.sh``: nodes in network
# namespaces) to run the tests against instead of the session's own; its nodes
# carry the same resources ``node_head``, ``node_a`` and ``node_b``.
EXTERNAL_CLUSTER = os.environ.get("RAYISOLATES_TEST_CLUSTER")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The session's Ray nodes: the head (2 CPUs) and workers ``a`` and ``b`` (1 CPU each)."""
    if EXTERNAL_CLUSTER:
        pytest.skip("changes the session's own cluster; running on RAYISOLATES_TEST_CLUSTER")
    os.environ.pop("RAY_ADDRESS", None)
    # A temp dir of our own keeps this cluster out of /tmp/ray/ray_current_cluster,
    # where a plain ray.init() elsewhere on the machine would find and join it.
    temp_dir = tempfile.mkdtemp(prefix="ri-", dir="/tmp")
    # Ray's Cluster writes its address to /tmp/ray/ray_current_cluster whatever
    # temp_dir says, and fails on a machine where /tmp/ray does not exist yet.
    address_file = Path("/tmp/ray/ray_current_cluster")
    address_file.parent.mkdir(exist_ok=True)
    previous = address_file.read_text() if address_file.exists() else None
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"test_slot": 4, "node_head": 1000},
            "object_store_memory": 700 * MB,
            "temp_dir": temp_dir,
            # Not 8265: another Ray on the machine may hold it, and this head's
            # dashboard (the state API the tests read) would then not start.
            "dashboard_port": _free_port(),
        },
    )
    for name in ("a", "b"):
        cluster.add_node(num_cpus=1, resources={f"node_{name}": 1000}, object_store_memory=400 * MB)
    cluster.wait_for_nodes()
    # Keep this cluster out of reach of a plain ray.init() elsewhere on the machine.
    if previous is None:
        address_file.unlink(missing_ok=True)
    else:
        address_file.write_text(previous)
    yield cluster
    cluster.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _ray_unless_unit(request: pytest.FixtureRequest) -> None:
    """Every test outside ``tests/unit/`` runs against the session's Ray, except those
    marked ``own_cluster`` (they start clusters of their own)."""
    if "unit" not in request.node.path.parts and not request.node.get_closest_marker("own_cluster"):
        request.getfixturevalue("ray_runtime")


@pytest.fixture(scope="session")
def ray_runtime(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The driver's connection to the session cluster, and facts tests compare against."""
    if EXTERNAL_CLUSTER:
        rayisolates.init(address=EXTERNAL_CLUSTER)
    else:
        rayisolates.init(address=request.getfixturevalue("cluster").address)
    context = ray.get_runtime_context()
    nodes = {}
    for node in ray.nodes():
        for name in ("head", "a", "b"):
            if f"node_{name}" in node["Resources"]:
                nodes[name] = node["NodeID"]
    yield {"gcs_address": context.gcs_address, "node_id": context.get_node_id(), "nodes": nodes}
    rayisolates.shutdown()


@pytest.fixture
def socket_base() -> Iterator[Path]:
    """A short private folder for Unix sockets: ``tmp_path`` grows with the test's name and
    the run count (``/tmp/pytest-of-<user>/pytest-101/<test name>0/``) past the 107
    bytes a socket path may have."""
    base = Path(tempfile.mkdtemp(prefix="ri-", dir="/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)
