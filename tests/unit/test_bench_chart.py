"""The bench chart without Ray: reading saved runs, grouping, drawing, the page's tables."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from rayisolates.bench import value_text
from rayisolates.bench.chart import GROUPS, draw, group_of, load_rows, ratio_text, rows_of
from tests.docs_pages import ROOT

FIGURE = {"name": "ping-pong main <-> isolate", "unit": "ms", "ratios": {"raw": 4.0, "pipe": 0.1}}


@pytest.mark.parametrize(
    ("name", "mode", "group"),
    [
        ("Isolate.run no-op round trip", None, "run"),
        ("spawn to first message, isolate pool", None, "spawn"),
        ("hard crash -> exit notice", None, "ports"),
        ("port throughput, 4 isolate(s) -> main", None, "ports"),
        ("IsolatePool.submit throughput, 4 members, 10,000 no-op tasks", None, "pools"),
        ("pool member SIGKILLed: task failed + replacement serving", None, "pools"),
        ("IsolatePool.stream small items, one by one, buffer 1024", None, "streams"),
        ("stop a streaming producer", None, "streams"),
        ("IsolateWorker no-op call round trip", None, "workers"),
        ("Isolate.run over a 1 GB array", None, "large data"),
        ("a 200 MB array through a port", None, "large data"),
        ("idle worker resident memory", None, "memory"),
        ("IsolateWorker no-op call round trip across nodes", None, "across nodes"),
        ("ping-pong main <-> isolate", "across-nodes", "across nodes"),
    ],
)
def test_group_of(name: str, mode: str | None, group: str) -> None:
    assert group_of(name, mode == "across-nodes") == group


def test_every_shape_of_a_saved_run_is_read() -> None:
    name = FIGURE["name"]
    expected = [(name, "raw", 4.0), (name, "pipe", 0.1)]
    for payload in ([FIGURE], {"meta": {"cpus": 2}, "rows": [FIGURE]}):
        rows = rows_of([("run.json", payload)])
        assert [(row.figure, row.comparator, row.ratio) for row in rows] == expected
        assert {row.group for row in rows} == {"ports"}


@pytest.mark.parametrize("payload", [{"meta": {}}, [{"name": "x"}], {"rows": "no"}, "text"])
def test_a_file_that_is_not_a_saved_run_is_refused(payload: Any) -> None:
    with pytest.raises(ValueError, match="not a saved bench run"):
        rows_of([("odd.json", payload)])


def test_a_later_figure_replaces_an_earlier_one_and_groups_order_the_rows() -> None:
    run = {"name": "Isolate.run no-op round trip", "ratios": {"raw": 0.9}}
    rerun = {**FIGURE, "ratios": {"raw": 5.0}}
    rows = rows_of([("a.json", [FIGURE, run]), ("b.json", {"rows": [rerun]})])
    assert [(row.group, row.comparator, row.ratio) for row in rows] == [
        ("run", "raw", 0.9),
        ("ports", "raw", 5.0),
    ]
    assert [row.group for row in rows] == sorted((row.group for row in rows), key=GROUPS.index)


def test_draw_writes_a_png(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "chart.png"
    draw(plt, rows_of([("run", [FIGURE])]), str(path), "title")
    assert path.read_bytes().startswith(b"\x89PNG")


def _saved_runs() -> list[Path]:
    """The saved runs in docs/, without the machine records beside them (X.meta.json)."""
    return sorted(p for p in ROOT.glob("docs/bench*.json") if not p.name.endswith(".meta.json"))


def test_the_benchmarks_page_lists_every_row_of_its_chart() -> None:
    """docs/benchmarks.md names the files docs/bench.png is drawn from; each of their rows
    (after replacements) is a row of the page's tables, with its medians and ratio."""
    page = (ROOT / "docs/benchmarks.md").read_text()
    command = re.search(r"^rayisolates bench --plot docs/bench\.png --from (.+)$", page, re.M)
    assert command, "the page shows the command that draws docs/bench.png"
    paths = [str(ROOT / path) for path in shlex.split(command[1])]
    saved = {path.name for path in _saved_runs()}
    assert {Path(path).name for path in paths} == saved  # every saved run is drawn
    medians = {}
    for path in paths:
        for figure in json.loads(Path(path).read_text()):
            medians[figure["name"]] = (figure["medians"], figure["unit"])
    rows = load_rows(paths)
    assert len(rows) > 50
    for row in rows:
        values, unit = medians[row.figure]
        line = (
            f"| {row.figure} | {value_text(values['rayisolates'])} {unit} | {row.comparator}: "
            f"{value_text(values[row.comparator])} {unit} | {ratio_text(row.ratio)} |"
        )
        assert line in page, line
    assert page.count("\n| ") - page.count("\n|---") == len(rows)  # and no row else


def test_the_command_line_draws_saved_runs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from rayisolates._cli import main

    chart, odd = tmp_path / "chart.png", tmp_path / "odd.json"
    saved = [str(path) for path in _saved_runs()]
    assert main(["bench", "--plot", str(chart), "--from", *saved]) == 0
    assert chart.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit, match="needs --plot"):
        main(["bench", "--from", *saved])
    odd.write_text('{"meta": {}}')
    with pytest.raises(SystemExit, match="not a saved bench run"):
        main(["bench", "--plot", str(chart), "--from", str(odd)])
