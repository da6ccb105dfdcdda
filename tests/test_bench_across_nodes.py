"""``rayisolates bench --across-nodes --quick``: three nodes started, measured, and gone.

The bench runs in a child interpreter whose environment carries a mark of
this test; every Ray process it starts inherits the mark, so what is left
of them afterwards is found by it, among other Ray sessions on the machine.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from rayisolates.bench import ACROSS_NODES_CASES

from .support import run_python

pytestmark = [pytest.mark.own_cluster, pytest.mark.slow]

MARK = "RAYISOLATES_BENCH_TEST_MARK"


def _marked(mark: str) -> list[int]:
    """The pids of live processes whose environment holds ``MARK=mark``."""
    wanted = f"{MARK}={mark}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # ended meanwhile, or not ours to read
            pass
    return found


@pytest.mark.timeout(600)
def test_across_nodes_quick_reports_ratios_and_leaves_no_ray(tmp_path: Path) -> None:
    report, mark = tmp_path / "bench.json", uuid.uuid4().hex
    output = run_python(
        "import sys; from rayisolates.bench import bench; "
        f"sys.exit(bench(quick=True, across_nodes=True, json_path={str(report)!r}))",
        env={MARK: mark},
        timeout=540,
    )
    figures = json.loads(report.read_text())
    assert len(figures) == len(ACROSS_NODES_CASES)
    for figure in figures:
        assert "across nodes" in figure["name"] and figure["name"] in output
        assert figure["mode"] == "across-nodes"
        cluster = figure["cluster"]
        assert cluster["started_by_bench"]
        assert sorted(node["role"] for node in cluster["nodes"]) == ["driver", "node_a", "node_b"]
        assert figure["ratios"] and set(figure["ratios"]) == set(figure["readings"]) - {
            "rayisolates"
        }
        assert all(value > 0 for value in figure["medians"].values()), figure["name"]
    record = json.loads(report.with_name("bench.meta.json").read_text())
    assert (record["mode"], record["ray_cluster"]["nodes"]) == ("across-nodes", 3)
    deadline = time.monotonic() + 30  # a killed worker may take a moment to be reaped
    while (left := _marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Ray processes of the bench still running: {left}"
