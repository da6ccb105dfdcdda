"""The library says what it has to say through ``logging.getLogger("rayisolates")`` and its
children, never by writing to the terminal itself: a user can filter and route it. Only the
command line (``rayisolates ...``: its commands, the demo, the bench) prints.

Swept over every module of the package, so that a print added anywhere is caught."""

from __future__ import annotations

import ast
from pathlib import Path

import rayisolates

PACKAGE = Path(rayisolates.__file__).parent
# What the command line runs: its output is the point.
COMMAND_LINE = {"_cli.py", "_demo.py", "_status.py", "__main__.py", "bench"}

# Calls that write to the terminal: print(...), traceback.print_*(...), sys.std*.write(...)
WRITERS = {"print", "print_exc", "print_exception", "print_stack", "print_tb", "print_last"}


def _writes(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Name) and function.id == "print":
        return "print"
    if isinstance(function, ast.Attribute):
        owner = function.value
        if function.attr in WRITERS and isinstance(owner, ast.Name) and owner.id == "traceback":
            return f"traceback.{function.attr}"
        if (
            function.attr == "write"
            and isinstance(owner, ast.Attribute)
            and owner.attr in ("stdout", "stderr")
        ):
            return f"sys.{owner.attr}.write"
    return None


def _library_modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not COMMAND_LINE & {path.name, path.relative_to(PACKAGE).parts[0]}
    ]


def test_library_modules_log_rather_than_print() -> None:
    modules = _library_modules()
    assert len(modules) > 40  # the sweep sees the package
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}: {writer}"
        for path in modules
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Call) and (writer := _writes(node)) is not None
    ]
    assert not found, "diagnostics must go through logging:\n" + "\n".join(found)


def test_the_sweep_finds_each_kind_of_write() -> None:
    source = "print(1)\ntraceback.print_exc()\nsys.stderr.write('x')\nlog.error('fine')\n"
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
    assert [_writes(call) for call in calls] == [
        "print",
        "traceback.print_exc",
        "sys.stderr.write",
        None,
    ]
