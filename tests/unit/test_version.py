"""The version is written once (``rayisolates/_version.py``); everything else reads it."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

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
