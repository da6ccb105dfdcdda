"""The command line: ``rayisolates demo`` and ``rayisolates bench --quick``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import run_python

CLI = "import sys; from rayisolates._cli import main; sys.exit(main(sys.argv[1:]))"


def cli(*arguments: str) -> str:
    code = f"import sys; sys.argv = ['rayisolates', *{list(arguments)!r}]; {CLI}"
    return run_python(code, timeout=400)


def test_demo_runs_every_example_on_the_running_cluster(ray_runtime: dict[str, str]) -> None:
    from rayisolates._demo import EXAMPLES

    output = cli("demo", "--address", ray_runtime["gcs_address"])
    for number, name in enumerate(EXAMPLES, 1):
        assert f"[{number}/{len(EXAMPLES)}] {name}: " in output
    assert "Number of JSON keys: 7" in output
    assert "Received 5000 photos" in output
    assert f"All {len(EXAMPLES)} examples ran" in output


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


def test_module_entry_point_shows_help() -> None:
    output = run_python(
        "import runpy, sys; sys.argv=['rayisolates','--help']\n"
        "try:\n    runpy.run_module('rayisolates', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0\n"
    )
    assert "demo" in output and "bench" in output
