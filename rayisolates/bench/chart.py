"""The bench chart: every row (figure, comparator) of one or more runs, grouped by what it measures.

``rayisolates bench --plot FILE.png`` draws the run it has just measured;
``rayisolates bench --plot FILE.png --from A.json B.json ...`` draws runs
saved with ``--json`` instead, without measuring (``docs/bench.png`` is
drawn that way from ``docs/bench*.json``). A saved run is a list of figures
(each with at least ``name`` and ``ratios``; ``mode`` tells an
across-nodes run), or an object holding that list under ``rows`` beside
other keys (a ``meta`` record of the machine, say); other keys of a figure
are ignored. A figure named again in a later file replaces the earlier one,
so a focused rerun of some cases updates a full run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GROUPS", "Row", "draw", "group_of", "load_rows", "ratio_text", "rows_of"]

# The chart's sections, top to bottom.
GROUPS = (
    "run",
    "spawn",
    "ports",
    "pools",
    "streams",
    "workers",
    "large data",
    "memory",
    "across nodes",
)


@dataclass(frozen=True, slots=True)
class Row:
    """One bar: how many times better rayisolates is than one comparator at one figure."""

    figure: str
    comparator: str
    ratio: float
    group: str


def ratio_text(ratio: float) -> str:
    """A ratio as people write it: ``109x``, ``12.3x``, ``1.36x``, ``0.27x``."""
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def group_of(figure: str, across_nodes: bool = False) -> str:
    """The section of :data:`GROUPS` a figure's rows belong to, from its name and mode."""
    name = figure.lower()
    if across_nodes or "across nodes" in name:
        return "across nodes"
    if "memory" in name:
        return "memory"
    if " gb " in name or " mb " in name or "array" in name:
        return "large data"
    if "spawn" in name:
        return "spawn"
    if "stream" in name:
        return "streams"
    if "isolatepool" in name or "pool member" in name:
        return "pools"
    if "isolateworker" in name:
        return "workers"
    if name.startswith("isolate.run"):
        return "run"
    return "ports"  # ping-pong, port throughput, exit notices


def _figures(payload: Any, source: str) -> list[Mapping[str, Any]]:
    """The figures of one saved run, whichever shape it has (see the module docstring)."""
    if isinstance(payload, Mapping):
        payload = payload.get("rows")
    if not isinstance(payload, list) or not all(
        isinstance(figure, Mapping) and "name" in figure and "ratios" in figure
        for figure in payload
    ):
        raise ValueError(
            f"{source}: not a saved bench run (a list of figures with name and ratios, "
            "or an object with such a list under 'rows')"
        )
    return payload


def rows_of(runs: Iterable[tuple[str, Any]]) -> list[Row]:
    """The rows of saved runs, ``(source name, parsed JSON)`` each, later figures replacing
    earlier ones of the same name, ordered by group and then as they came.

    Raises:
        ValueError: A payload that is not a saved run.
    """
    figures: dict[str, Mapping[str, Any]] = {}
    for source, payload in runs:
        for figure in _figures(payload, source):
            figures.pop(figure["name"], None)  # a rerun takes the place of the old reading
            figures[figure["name"]] = figure
    rows = [
        Row(
            name,
            comparator,
            float(ratio),
            group_of(name, figure.get("mode") == "across-nodes"),
        )
        for name, figure in figures.items()
        for comparator, ratio in figure["ratios"].items()
    ]
    return sorted(rows, key=lambda row: GROUPS.index(row.group))  # stable: keeps their order


def load_rows(paths: Sequence[str]) -> list[Row]:
    """:func:`rows_of` the JSON files at ``paths``, in that order."""
    runs = []
    for path in paths:
        with open(path) as file:
            runs.append((path, json.load(file)))
    return rows_of(runs)


def draw(plt: Any, rows: Sequence[Row], path: str, title: str) -> None:
    """A horizontal bar per row on a log scale, a heading over each group; saved at ``path``.

    ``plt`` is ``matplotlib.pyplot`` (the caller imports it, with a clear
    error when it is missing).
    """
    labels, ratios = _layout(rows)
    figure, axes = plt.subplots(figsize=(15, 0.28 * len(labels) + 1.8))
    bars = [(index, ratio) for index, ratio in enumerate(ratios) if ratio is not None]
    axes.barh(
        [index for index, _ in bars],
        [ratio for _, ratio in bars],
        color=[
            "#2a9d4b" if ratio >= 1 else "#e0a030" if ratio >= 1 / 1.2 else "#c0392b"
            for _, ratio in bars
        ],
    )
    axes.set_yticks(range(len(labels)), labels, fontsize=7)
    for tick, ratio in zip(axes.get_yticklabels(), ratios, strict=True):
        if ratio is None:
            tick.set_fontweight("bold")
            tick.set_fontsize(9)
    axes.set_ylim(len(labels) - 0.5, -0.5)  # top to bottom, as listed
    axes.set_xscale("log")
    if bars:  # room on the right for the largest ratio's text
        axes.set_xlim(min(ratio for _, ratio in bars) / 2, max(ratio for _, ratio in bars) * 8)
    axes.axvline(1, color="black", linewidth=1)
    for index, ratio in enumerate(ratios):
        if ratio is None:
            if index:
                axes.axhline(index - 0.5, color="#999999", linewidth=0.5)
        else:
            axes.text(ratio, index, f" {ratio_text(ratio)}", va="center", fontsize=7)
    axes.set_xlabel(
        "times better than the comparator (log scale)\n"
        "green: rayisolates wins; amber: within 20%; red: behind"
    )
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")  # long labels widen the image
    plt.close(figure)


def _layout(rows: Sequence[Row]) -> tuple[list[str], list[float | None]]:
    """The chart's lines: a heading (ratio None) before each group, then its rows."""
    labels: list[str] = []
    ratios: list[float | None] = []
    group = None
    for row in rows:
        if row.group != group:
            group = row.group
            labels.append(group.upper())
            ratios.append(None)
        label = f"{row.figure}  vs {row.comparator}"
        labels.append(label if len(label) <= 90 else f"{row.figure}\nvs {row.comparator}")
        ratios.append(row.ratio)
    return labels, ratios
