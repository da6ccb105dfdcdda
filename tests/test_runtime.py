"""Starting Ray on first use, and joining a running one through RAY_ADDRESS."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

import rayisolates

from .support import run_python

PROBE = """
import ray
from rayisolates import Isolate, shutdown
assert not ray.is_initialized()
node = Isolate.run(lambda: ray.get_runtime_context().get_node_id()).result(timeout=60)
print(node)
shutdown()
assert not ray.is_initialized()
"""


def test_first_use_starts_a_local_ray(ray_runtime: dict[str, str], tmp_path: Path) -> None:
    # Ray's own rule: a plain ray.init() joins the cluster `ray start` last
    # started on this machine (the session's, here). A temp dir of its own
    # hides that cluster, as on a machine where none runs.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ri-", dir="/tmp"))
    try:
        output = run_python(PROBE, env={"RAY_TMPDIR": str(ray_tmp)})
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    node = output.strip().splitlines()[-1]
    assert len(node) == 56
    assert node != ray_runtime["node_id"]


def test_ray_address_joins_the_running_cluster(ray_runtime: dict[str, str]) -> None:
    node = run_python(PROBE, env={"RAY_ADDRESS": ray_runtime["gcs_address"]})
    assert node.strip().splitlines()[-1] == ray_runtime["node_id"]


def test_init_twice_is_refused() -> None:
    with pytest.raises(RuntimeError, match="already initialized"):
        rayisolates.init()
