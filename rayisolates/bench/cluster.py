"""The nodes of ``rayisolates bench --across-nodes``: a cluster started here, or one given.

Cross-node cases place isolates and raw actors with two custom resources,
``node_a`` and ``node_b``, each held by nodes other than the driver's. Without
an address the bench starts three Ray nodes on this machine
(``ray.cluster_utils.Cluster``): a head for the driver and two workers holding
those resources, shut down when the bench ends, however it ends. With an
address, the cluster must already have them (:func:`cluster_shape` says what
is missing).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["NODE_A", "NODE_B", "cluster_shape", "local_cluster", "on", "on_driver_node"]

NODE_A, NODE_B = "node_a", "node_b"
# What a node must hold of its resource: a case keeps up to two isolates and raw
# actors there (each takes 1), and those of the case before may still be ending.
PER_NODE = 4
MB = 1024 * 1024
# Where Ray's Cluster writes its address for a plain ray.init() to find; a bench
# cluster is nobody else's, so what was there before is put back.
_ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")


def on(node: str) -> dict[str, Any]:
    """Ray options that place an isolate, a raw actor or a task on ``node``."""
    return {"resources": {node: 1}}


def on_driver_node() -> dict[str, Any]:
    """Ray options that place a raw actor on the driver's node (where the main isolate's
    inbox lives)."""
    node_id = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}


@contextmanager
def local_cluster() -> Iterator[str]:
    """Three Ray nodes on this machine, one CPU each: a head for the driver, and workers
    holding ``node_a`` and ``node_b``. Yields the head's address; every node is shut
    down on the way out, on errors and Ctrl-C too (Ray's nodes block SIGINT, and die
    with this process if it is killed)."""
    # A folder of our own, short for Ray's socket paths, keeps Ray's sessions apart.
    temp_dir = tempfile.mkdtemp(prefix="rib-", dir="/tmp")
    _ADDRESS_FILE.parent.mkdir(exist_ok=True)  # Ray's Cluster fails without it
    previous = _ADDRESS_FILE.read_text() if _ADDRESS_FILE.exists() else None
    cluster = Cluster()  # empty: nodes started before a failure are still shut down
    try:
        cluster.add_node(
            num_cpus=1,
            object_store_memory=256 * MB,
            include_dashboard=False,
            # Ray still claims the dashboard's port (8265 unless told), and logs an
            # error when another Ray on this machine holds it.
            dashboard_port=_free_port(),
            temp_dir=temp_dir,
        )
        for node in (NODE_A, NODE_B):
            cluster.add_node(num_cpus=1, resources={node: 10}, object_store_memory=256 * MB)
        cluster.wait_for_nodes()
        yield str(cluster.address)
    finally:
        cluster.shutdown()
        if previous is None:
            _ADDRESS_FILE.unlink(missing_ok=True)
        else:
            _ADDRESS_FILE.write_text(previous)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cluster_shape(started_here: bool) -> dict[str, Any]:
    """The cluster this driver is connected to, as the report records it.

    Raises:
        SystemExit: ``node_a`` or ``node_b`` is missing, held by the
            driver's node, held by a node in an amount under ``PER_NODE``, or
            both held by one node; the message says how to start the nodes.
    """
    driver = ray.get_runtime_context().get_node_id()
    nodes = [node for node in ray.nodes() if node["Alive"]]
    holders = {
        name: {
            node["NodeID"]: node["Resources"][name] for node in nodes if name in node["Resources"]
        }
        for name in (NODE_A, NODE_B)
    }
    problems = [f"no node holds resource {name!r}" for name, held in holders.items() if not held]
    problems += [
        f"the driver's node holds {name!r}" for name, held in holders.items() if driver in held
    ]
    problems += [
        f"a node holds {amount:g} of {name!r}, fewer than the {PER_NODE} a case may use"
        for name, held in holders.items()
        for amount in held.values()
        if amount < PER_NODE
    ]
    if holders[NODE_A].keys() & holders[NODE_B].keys():
        problems.append(f"one node holds both {NODE_A!r} and {NODE_B!r}")
    if problems:
        raise SystemExit(
            "rayisolates bench --across-nodes --address: "
            + "; ".join(problems)
            + ". Its cases place isolates with these resources on two nodes other than "
            "the driver's: start them with `ray start --address HEAD:PORT "
            f"--resources '{{\"{NODE_A}\": 10}}'` on one node and the same with "
            f"{NODE_B!r} on another, or leave out --address to let the bench start three "
            "nodes on this machine."
        )

    def role(node: dict[str, Any]) -> str:
        if node["NodeID"] == driver:
            return "driver"
        return next((name for name, ids in holders.items() if node["NodeID"] in ids), "other")

    return {
        "started_by_bench": started_here,
        "nodes": [
            {
                "role": role(node),
                "node_id": node["NodeID"],
                "address": node["NodeManagerAddress"],
                "resources": {
                    name: amount
                    for name, amount in node["Resources"].items()
                    if not name.startswith("node:") and "memory" not in name
                },
            }
            for node in nodes
        ],
    }
