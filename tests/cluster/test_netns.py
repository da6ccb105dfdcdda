"""Ray nodes in network namespaces (``cluster/netns-cluster.sh``): several hosts on one
machine, each with its own network stack, so that a node's link can be cut and healed.

Skipped where namespaces cannot be made (not root, no ``ip netns``). One
cluster of three namespaces (``head``, ``a``, ``b``) serves the module; the
drivers run inside the head's namespace, never in the machine's own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support import ROOT

SCRIPT = ROOT / "cluster" / "netns-cluster.sh"
RAY = Path(sys.executable).with_name("ray")

pytestmark = [pytest.mark.own_cluster, pytest.mark.slow]

# Ray's failure detection, shortened for the tests as Ray's own partition test does
# (its defaults: a node is declared dead ~65 s after its link is cut, and a task
# running there fails ~420 s after, when gRPC's keepalive gives up; see
# cluster/README.md). Given to the nodes and to the drivers alike.
RAY_SETTINGS = {
    "RAY_health_check_period_ms": "2000",
    "RAY_health_check_timeout_ms": "2000",
    "RAY_health_check_failure_threshold": "5",
    "RAY_grpc_client_keepalive_time_ms": "10000",
    "RAY_grpc_client_keepalive_timeout_ms": "10000",
}
HEAL_AFTER_SECONDS = 6.0  # well inside the ~20 s before the node is declared dead


def _namespaces_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    probe = f"ri-probe-{os.getpid()}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"'ip netns add' fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


UNAVAILABLE = _namespaces_unavailable()
if UNAVAILABLE:
    pytestmark.append(pytest.mark.skip(reason=UNAVAILABLE))


class NetnsCluster:
    """A running ``netns-cluster.sh`` cluster: commands in its namespaces, cuts and heals."""

    def __init__(self, state: Path, prefix: str) -> None:
        self.state = state
        self.prefix = prefix

    def script(self, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), arguments[0], "--state", str(self.state), *arguments[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **RAY_SETTINGS, "RAY": str(RAY)},
            check=False,
        )

    def run(
        self, node: str, *command: str, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``command`` inside ``node``'s namespace, from the repository root."""
        return subprocess.run(
            [str(SCRIPT), "run", "--state", str(self.state), node, *command],
            cwd=ROOT,
            env={**os.environ, **RAY_SETTINGS},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, node: str, *command: str, stderr: Path) -> subprocess.Popen[str]:
        """``command`` inside ``node``'s namespace, talked to over its stdin and stdout."""
        with stderr.open("w") as errors:
            return subprocess.Popen(
                [str(SCRIPT), "run", "--state", str(self.state), node, *command],
                cwd=ROOT,
                env={**os.environ, **RAY_SETTINGS},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )

    def link(self, action: str, node: str) -> float:
        """Cut or heal ``node``'s link; the wall-clock time it happened."""
        done = self.script(action, node)
        assert done.returncode == 0, done.stderr
        return time.time()


@pytest.fixture(scope="module")
def netns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    state = Path(f"/tmp/ri-ns-{secrets.token_hex(3)}")  # short: Ray's socket paths
    prefix = f"rt{secrets.token_hex(2)}"
    cluster = NetnsCluster(state, prefix)
    up = cluster.script("up", "--prefix", prefix, "3", timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield cluster
    finally:
        down = cluster.script("down", timeout=120)
        shutil.rmtree(state, ignore_errors=True)
        assert down.returncode == 0, down.stderr
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        )
        left = listed.stdout
        assert prefix not in left, left


def driver_lines(process: subprocess.Popen[str], stderr: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines a driver prints, failing with its stderr if it ends early (the
    test's timeout bounds the wait)."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{"):
            yield json.loads(line)
    process.wait(10)
    pytest.fail(f"the driver ended ({process.returncode}): {stderr.read_text()[-4000:]}")


def partition(
    cluster: NetnsCluster, tmp_path: Path, heal_after: float | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``netns_talk`` in the head's namespace, cut ``b``'s link once traffic flows on
    every pair (and heal it ``heal_after`` seconds later); the driver's outcome and the
    events it reported on the way."""
    stderr = tmp_path / "driver.err"
    driver = cluster.start("head", sys.executable, "-m", "tests.cluster.netns_talk", stderr=stderr)
    try:
        lines = driver_lines(driver, stderr)
        assert next(lines)["event"] == "ready"
        cut_at = cluster.link("cut", "b")
        if heal_after is not None:
            time.sleep(heal_after)  # the partition's length is the scenario itself
            cluster.link("heal", "b")
        assert driver.stdin is not None
        driver.stdin.write(json.dumps({"cut_at": cut_at, "healed": heal_after is not None}))
        driver.stdin.write("\n")
        driver.stdin.flush()
        events: list[dict[str, Any]] = []
        for event in lines:
            if event["event"] == "outcome":
                driver.wait(60)
                print(json.dumps({key: value for key, value in event.items() if key != "records"}))
                return event, events
            events.append(event)
        raise AssertionError("unreachable")
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)


def assert_exact(records: dict[str, Any], senders: list[str]) -> None:
    """Every receiver got from each of ``senders`` exactly 0, 1, ..., n-1, where n is what
    that sender says it sent: nothing lost, repeated or out of order."""
    for receiver, record in records.items():
        for sender in senders:
            got = record["got"][sender]
            said = record["finished"].get(sender)
            assert got["exact"] and got["count"] == said, (receiver, sender, got, said)


def test_ring_and_cross_node_tests_with_the_driver_in_a_namespace(
    netns_cluster: NetnsCluster,
) -> None:
    ring = netns_cluster.run("head", sys.executable, "examples/cluster_ring.py")
    assert ring.returncode == 0, ring.stderr[-3000:]
    assert "3 laps (9 hops) round 3 isolates on 3 node(s)" in ring.stdout, ring.stdout
    address = netns_cluster.run("head", "sh", "-c", "echo $RAY_ADDRESS").stdout.strip()
    tests = netns_cluster.run(
        "head",
        "env",
        f"RAYISOLATES_TEST_CLUSTER={address}",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/cluster/test_nodes.py",
        "tests/test_stream.py::test_a_stream_across_nodes",
        "tests/test_ports.py::test_a_busy_isolate_still_gets_its_messages_out",
        "tests/test_examples.py::test_cluster_ring_spreads_over_every_node",
        timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and " failed" not in tests.stdout, tests.stdout[-2000:]


def test_the_script_refuses_bad_requests_clearly(netns_cluster: NetnsCluster) -> None:
    # Nobody runs a copy in a folder anyone can enter: the clone itself may sit in a
    # folder only its owner can enter (a home of mode 700, a mktemp -d folder).
    shared = Path(tempfile.mkdtemp(prefix="ri-ns-script-"))
    try:
        shared.chmod(0o755)
        copy = shared / SCRIPT.name
        shutil.copyfile(SCRIPT, copy)
        copy.chmod(0o755)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(copy)]
        refusals = {
            (*nobody, "up", "3", "--state", "/tmp/ri-ns-nobody"): "must run as root",
            (str(SCRIPT), "up", "0", "--state", "/tmp/ri-ns-zero"): "node count from 1 to 26",
            (str(SCRIPT), "up", "3", "--prefix", "Bad-Prefix"): "--prefix must be",
            (str(SCRIPT), "cut", "--state", str(netns_cluster.state), "c"): "no node 'c'",
            (str(SCRIPT), "heal", "--state", "/tmp/ri-ns-none", "b"): "no cluster recorded",
            (str(SCRIPT), "run", "--state", str(netns_cluster.state), "head"): "needs a command",
            (str(SCRIPT), "up", "3", "--state", str(netns_cluster.state)): "is up already",
            (str(SCRIPT), "frobnicate"): "netns-cluster.sh up N",
        }
        for command, message in refusals.items():
            refused = subprocess.run(
                command,
                cwd="/" if command[0] == "setpriv" else None,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
            assert message in refused.stderr, (command, refused.stderr)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    # Nothing of the running cluster was touched.
    assert netns_cluster.run("head", "true").returncode == 0


def test_a_driver_without_the_token_is_refused(netns_cluster: NetnsCluster) -> None:
    connect = "import ray; ray.init(); print('connected')"
    no_token = ["-u", "RAY_AUTH_TOKEN_PATH"]
    for token_env in (no_token, [*no_token, "RAY_AUTH_TOKEN=wrong"]):
        refused = netns_cluster.run(
            "head", "env", *token_env, sys.executable, "-c", connect, timeout=120
        )
        assert refused.returncode != 0, refused.stdout
        assert "connected" not in refused.stdout
        assert "token" in refused.stderr.lower(), refused.stderr[-3000:]


@pytest.mark.timeout(600)
def test_a_cut_healed_within_the_health_check_window_loses_nothing(
    netns_cluster: NetnsCluster, tmp_path: Path
) -> None:
    outcome, events = partition(netns_cluster, tmp_path, heal_after=HEAL_AFTER_SECONDS)
    assert events == []  # no exit notice, no run ended
    assert outcome["runs_still_running"]
    assert_exact(outcome["records"], ["head", "a", "b", "main"])


@pytest.mark.timeout(900)
def test_a_cut_node_is_declared_dead_and_the_other_pairs_lose_nothing(
    netns_cluster: NetnsCluster, tmp_path: Path
) -> None:
    """Runs last: node b stays dead."""
    outcome, _ = partition(netns_cluster, tmp_path, heal_after=None)
    assert "timed_out_after_seconds" not in outcome, outcome
    assert outcome["exit"] == "b"
    assert outcome["pinned"].startswith("RemoteError"), outcome
    assert outcome["preferring"] in ("ran on head", "ran on a"), outcome
    records = outcome["records"]
    assert_exact(records, ["head", "a", "main"])
    for receiver, record in records.items():
        from_b = record["got"]["b"]  # what b sent before the cut: a prefix, in order
        assert from_b["exact"] and from_b["count"] > 0, (receiver, from_b)
