"""What the examples import beyond the package is the ``examples`` extra, and the demo
says so when it is missing."""

from __future__ import annotations

import ast
import importlib.util
import sys
import tomllib
from importlib.machinery import ModuleSpec

import pytest

from rayisolates import _demo

from ..support import ROOT

RUNTIME = {"ray", "numpy", "rayisolates", "examples"}  # the package's own, and its deps


def imported_by_examples() -> set[str]:
    names: set[str] = set()
    for script in (ROOT / "examples").glob("*.py"):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - RUNTIME


def test_the_extra_is_what_the_examples_import() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    declared = {requirement.partition(">")[0] for requirement in extras["examples"]}
    assert imported_by_examples() == declared == set(_demo.EXAMPLES_NEED)


def test_the_demo_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def without_orjson(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "orjson" else ModuleSpec(name, None)

    monkeypatch.setattr(importlib.util, "find_spec", without_orjson)
    assert _demo.missing() == ["orjson"]
    assert _demo.demo() == 2
    error = capsys.readouterr().err
    assert "import orjson" in error and "pip install 'rayisolates[examples]'" in error
