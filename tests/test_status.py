"""``rayisolates status`` from another process while a program runs, and the Ray metrics.

The program (``tests/status_driver.py``) runs as its own driver on the
session cluster; ``status`` runs as a third process, as from a second
terminal.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from rayisolates._status import render

from .status_driver import FLOOD, POOL_TASKS, TALKS, WORKER_HELD
from .support import ROOT


@pytest.fixture(scope="module")
def program(
    ray_runtime: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The running program: what it said when ready, and how to reach its cluster."""
    stderr = tmp_path_factory.mktemp("status") / "driver.err"
    env = {**os.environ, "RAY_ADDRESS": ray_runtime["gcs_address"]}
    with stderr.open("w") as errors:
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.status_driver"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert driver.stdout is not None and driver.stdin is not None
        for line in driver.stdout:
            if line.startswith("{"):
                break
        else:
            pytest.fail(f"the program ended: {stderr.read_text()[-3000:]}")
        yield {**json.loads(line), "address": ray_runtime["gcs_address"]}
        driver.stdin.write("\n")
        driver.stdin.flush()
        assert driver.wait(60) == 0, stderr.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()


def status(address: str, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rayisolates", "status", "--address", address, *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def our_driver(program: dict[str, Any]) -> dict[str, Any]:
    """The program's entry in ``status --json``, once every flood message has arrived
    (they are in flight a moment after the program said ready) and both pool members
    are listed (the second may still be starting: the first can run every task)."""
    deadline = time.monotonic() + 60
    while True:
        done = status(program["address"], "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        (driver,) = [
            d for d in json.loads(done.stdout)["drivers"] if d["job_id"] == program["job_id"]
        ]
        isolates = by_name(driver)
        members = {"status-pool-0", "status-pool-1", "status-worker"} <= set(isolates)
        if (isolates["status-flooded"]["queued"] == FLOOD and members) or (
            time.monotonic() > deadline
        ):
            found: dict[str, Any] = driver
            return found
        time.sleep(0.2)


def by_name(driver: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {isolate["debug_name"]: isolate for isolate in driver["isolates"]}


@pytest.mark.timeout(300)
def test_status_shows_isolates_ports_queues_and_pools(program: dict[str, Any]) -> None:
    driver = our_driver(program)
    isolates = by_name(driver)
    assert {
        "status-idle",
        "status-talker",
        "status-flooded",
        "status-pool-0",
        "status-pool-1",
    } <= set(isolates), isolates
    for isolate in isolates.values():
        assert isolate["pid"] > 0 and isolate["isolate_id"].startswith("isolate-")
        assert isolate["node_ip"], isolate

    flooded = isolates["status-flooded"]
    assert (flooded["state"], flooded["queued"], flooded["received"]) == ("paused", FLOOD, FLOOD)
    assert flooded["open_ports"] == 1

    talker = isolates["status-talker"]
    assert talker["state"] == "running"
    assert talker["sent"] == TALKS + 1  # and its port
    assert talker["node_id"] == program["nodes"]["a"]  # the session cluster's node a

    idle = isolates["status-idle"]
    assert (idle["state"], idle["open_ports"], idle["queued"]) == ("running", 1, 0)

    main = driver["main"]
    assert main["pid"] == program["pid"]
    assert main["sent"] >= FLOOD and main["received"] >= TALKS + 3 and main["queued"] == 0

    (worker,) = [worker for worker in driver["workers"] if worker["name"] == "status-worker"]
    assert worker["isolate_id"] == isolates["status-worker"]["isolate_id"]
    assert (worker["class"], worker["pending"], worker["running"], worker["completed"]) == (
        "Recorder",
        WORKER_HELD,
        WORKER_HELD,
        1,
    )

    (pool,) = [pool for pool in driver["pools"] if pool["name"] == "status-pool"]
    assert pool["owner"] == "main"
    assert (pool["members"], pool["completed"], pool["busy"], pool["failed"]) == (
        2,
        POOL_TASKS,
        0,
        0,
    )


@pytest.mark.timeout(120)
def test_status_as_a_table(program: dict[str, Any]) -> None:
    done = status(program["address"])
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    assert f"driver (job {program['job_id']}), main isolate: pid {program['pid']}" in table
    for name in ("status-idle", "status-talker", "status-flooded", "status-pool-0", "status-pool"):
        assert name in table, table
    ours = table.split(f"driver (job {program['job_id']})")[1].split("\ndriver (job")[0]
    worker_row = next(line for line in ours.splitlines() if "Recorder" in line)  # not the tests'
    assert worker_row.split()[0] == "status-worker"
    assert worker_row.split()[-4:] == [str(WORKER_HELD), str(WORKER_HELD), "1", "0"]
    flooded_row = next(line for line in table.splitlines() if "status-flooded" in line)
    assert "paused" in flooded_row and str(FLOOD) in flooded_row.split()


@pytest.mark.timeout(120)
def test_the_figures_reach_rays_metrics(program: dict[str, Any]) -> None:
    """Ray's Prometheus endpoints show the queue, tagged with the isolate's debug name."""
    wanted = 'isolate="status-flooded"'
    deadline = time.monotonic() + 60
    seen: list[str] = []
    while time.monotonic() < deadline:
        for node in ray.nodes():
            if not node["Alive"]:
                continue
            url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            text = httpx.get(url, timeout=10).text
            seen = [
                line
                for line in text.splitlines()
                if line.startswith("ray_rayisolates_messages_queued{") and wanted in line
            ]
            if seen and float(seen[0].rsplit(" ", 1)[1]) == FLOOD:
                return
        time.sleep(1)  # Ray's agent exports every few seconds
    pytest.fail(f"no queue of {FLOOD} for status-flooded in Ray's metrics: {seen}")


def test_render_without_programs_and_with_an_unreachable_isolate() -> None:
    assert render([]) == "No program using rayisolates runs on this cluster."
    driver = {
        "job_id": "01000000",
        "main": {
            "pid": 7,
            "node_ip": "10.0.0.1",
            "open_ports": 1,
            "sent": 2,
            "received": 3,
            "queued": 0,
        },
        "isolates": [{"isolate_id": "isolate-x", "debug_name": None, "state": "unreachable"}],
        "pools": [],
        "idle_pooled_hosts": 0,
    }
    table = render([driver]).splitlines()
    assert table[0].startswith("driver (job 01000000), main isolate: pid 7 on 10.0.0.1")
    assert table[2].split() == ["-", "isolate-x", "-", "-", "unreachable", "-", "-", "-", "-"]


def test_status_of_an_address_where_no_ray_runs_says_so(tmp_path: Path) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "rayisolates", "status", "--address", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        | {"RAY_TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert f"no Ray cluster to ask (nothing answers at 127.0.0.1:{port}" in done.stderr
