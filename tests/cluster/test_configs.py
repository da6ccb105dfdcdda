"""cluster/: the launcher YAML and KubeRay manifest, and the ray-cluster.sh script for real."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from ..support import ROOT, run_python

SCRIPT = ROOT / "cluster" / "ray-cluster.sh"
RAY = Path(sys.executable).with_name("ray")


def test_launcher_yaml_validates_against_rays_schema() -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster" / "cluster-launcher.yaml").read_text())
    jsonschema.validate(config, schema)
    validate_config(prepare_config(config))
    assert config["provider"]["type"] == "local"
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in command for command in starts if "ray start" in command)
    assert any(
        "pip install" in command and "rayisolates" in command
        for command in config["setup_commands"]
    )


def test_kuberay_manifest_keeps_token_authentication() -> None:
    manifest = yaml.safe_load((ROOT / "cluster" / "kuberay-raycluster.yaml").read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayCluster")
    groups = [manifest["spec"]["headGroupSpec"], *manifest["spec"]["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        env = {variable["name"]: variable for variable in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
        assert "rayisolates" in " ".join(container["args"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def script(*arguments: str) -> str:
    finished = subprocess.run(
        [str(SCRIPT), *arguments],
        env={**os.environ, "RAY": str(RAY)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


@pytest.fixture
def three_nodes() -> Iterator[dict[str, str]]:
    """A head and two workers started by cluster/ray-cluster.sh; stopped afterwards."""
    state = tempfile.mkdtemp(prefix="ri-", dir="/tmp")  # short: Ray's socket paths have a limit
    try:
        script("up", "--workers", "2", "--port", str(free_port()), "--state", state)
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in script("env", "--state", state).splitlines()
        )
        yield {**exports, "STATE": state}
    finally:
        script("down", "--state", state)
        leftovers = subprocess.run(
            ["pgrep", "-f", state], check=False, capture_output=True, text=True
        )
        shutil.rmtree(state, ignore_errors=True)
        assert leftovers.stdout.strip() == "", "ray-cluster.sh down left processes behind"


@pytest.mark.timeout(300)
def test_script_starts_a_cluster_the_ring_runs_on_and_refuses_strangers(
    three_nodes: dict[str, str],
) -> None:
    client = {key: value for key, value in three_nodes.items() if key != "STATE"}
    stranger = {
        "RAY_ADDRESS": three_nodes["RAY_ADDRESS"],
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": "not-the-cluster-token",
        "RAY_gcs_server_request_timeout_seconds": "5",  # refused sooner than Ray's 60 s
    }
    # The two clients are independent: run them side by side.
    with concurrent.futures.ThreadPoolExecutor(2) as clients:
        ring_run = clients.submit(
            run_python,
            "import runpy, sys; sys.argv = ['cluster_ring.py']; "
            "runpy.run_path('examples/cluster_ring.py', run_name='__main__')",
            env=client,
            timeout=120,
        )
        refused_run = clients.submit(
            run_python,
            "import logging, ray\n"
            "try:\n"
            "    ray.init(logging_level=logging.CRITICAL)\n"
            "    print('CONNECTED')\n"
            "except ConnectionError as error:\n"
            "    print('REFUSED', error)\n",
            env=stranger,
            timeout=120,
        )
        ring, refused = ring_run.result(), refused_run.result()
    assert "3 isolates on 3 node(s)" in ring
    assert len({line.split()[5] for line in ring.splitlines() if "runs on node" in line}) == 3
    assert "REFUSED" in refused and "CONNECTED" not in refused
