"""The version is written once (``rayisolates/_version.py``); everything else reads it."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib

import pytest

import rayisolates
from rayisolates._cli import main


def test_the_package_and_its_metadata_agree() -> None:
    assert rayisolates.__version__ == importlib.metadata.version("rayisolates")


def test_the_command_line_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--version"])
    assert ended.value.code == 0
    assert capsys.readouterr().out == f"rayisolates {rayisolates.__version__}\n"


def test_the_module_entry_point_prints_it() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "rayisolates", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert printed.stdout.split() == ["rayisolates", importlib.metadata.version("rayisolates")]


def test_the_lowest_ray_checked_is_the_lowest_allowed() -> None:
    """``make test-min-ray`` runs on the Ray version that pyproject.toml's bound names."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    from ..support import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (ray,) = (Requirement(spec) for spec in project["dependencies"] if spec.startswith("ray"))
    (bound,) = (spec.version for spec in ray.specifier if spec.operator == ">=")
    (checked,) = re.findall(r"^MIN_RAY := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert Version(checked) == Version(bound)
