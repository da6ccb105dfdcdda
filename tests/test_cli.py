"""The command line: ``rayisolates bench --quick`` and the module entry point.

``rayisolates demo`` runs the examples that ``test_examples`` asserts on one
by one; CI runs it whole (``make demo``), so it is not run twice here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import run_python

CLI = "import sys; from rayisolates._cli import main; sys.exit(main(sys.argv[1:]))"


def cli(*arguments: str) -> str:
    code = f"import sys; sys.argv = ['rayisolates', *{list(arguments)!r}]; {CLI}"
    return run_python(code, timeout=400)


@pytest.mark.timeout(450)
def test_bench_quick_reports_ratios(ray_runtime: dict[str, str], tmp_path: Path) -> None:
    from rayisolates.bench import CASES

    report, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    output = cli(
        "bench",
        "--quick",
        "--json",
        str(report),
        "--plot",
        str(chart),
        "--address",
        ray_runtime["gcs_address"],
    )
    figures = json.loads(report.read_text())
    assert len(figures) == len(CASES)
    for figure in figures:
        assert figure["name"] in output
        assert figure["ratios"] and set(figure["ratios"]) == set(figure["readings"]) - {
            "rayisolates"
        }
        assert all(value > 0 for value in figure["medians"].values()), figure["name"]
        assert all(len(values) >= 2 for values in figure["readings"].values())
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "bench.meta.json").read_text())
    assert record["cases"] == [figure["name"] for figure in figures]
    assert (record["mode"], record["quick"]) == ("single-node", True)
    assert record["ray_cluster"]["nodes"] == 3  # the session's cluster: head, a and b
    assert record["machine"]["cores"] and record["machine"]["memory_bytes"]
    assert record["rayisolates"] and record["ray"] and record["python"] and record["date"]


def test_module_entry_point_shows_help() -> None:
    output = run_python(
        "import runpy, sys; sys.argv=['rayisolates','--help']\n"
        "try:\n    runpy.run_module('rayisolates', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0\n"
    )
    assert "demo" in output and "bench" in output
