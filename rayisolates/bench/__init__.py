"""``rayisolates bench``: rayisolates next to what users would write instead.

A client of the library like any other (it imports the public API); its
cases live beside it (``running``, ``ports``, ``data``), and what runs inside
isolates and raw Ray actors in ``entries``, which workers import by
reference. ``--across-nodes`` runs the cases of ``across`` instead, on three
nodes (``cluster``).

Every figure is measured for rayisolates and its comparators interleaved in
one run (A, B, A, B, ...), so a noisy machine slows both alike; the report
gives medians and the ratio to each comparator, never one time alone.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

from rayisolates import init, shutdown

from .across import (
    ping_pong_across_nodes,
    ping_pong_isolates_across_nodes,
    stream_across_nodes_buffer_16,
    stream_across_nodes_buffer_1024,
    throughput_across_nodes,
    throughput_isolates_across_nodes,
    worker_round_trip_across_nodes,
)
from .between import ping_pong_between_isolates, throughput_between_isolates
from .chart import draw, load_rows, ratio_text, rows_of
from .cluster import cluster_shape, local_cluster
from .data import exit_large_array, port_large_array, run_over_large_array
from .figure import OURS, Figure
from .pool import pool_replacement, pool_round_trip, pool_throughput, pool_throughput_script
from .ports import (
    crash_notice,
    ping_pong,
    ping_pong_reply_port,
    throughput_four_senders,
    throughput_one_sender,
)
from .record import ray_cluster, run_record, sidecar_path
from .running import (
    idle_memory,
    run_round_trip,
    run_throughput,
    spawn_first_message,
    spawn_from_pool,
)
from .streams import stream_stop, stream_throughput
from .workers import worker_idle_memory, worker_round_trip, worker_throughput

__all__ = ["ACROSS_NODES_CASES", "CASES", "bench", "plot", "ratio_text", "value_text"]

# Each case: a context manager (loop, quick) -> Figure, see figure.py.
CASES = [
    run_round_trip,
    run_throughput,
    spawn_first_message,
    spawn_from_pool,
    pool_round_trip,
    pool_throughput,
    pool_throughput_script,
    pool_replacement,
    worker_round_trip,
    worker_throughput,
    stream_throughput,
    stream_stop,
    ping_pong,
    ping_pong_reply_port,
    ping_pong_between_isolates,
    throughput_one_sender,
    throughput_four_senders,
    throughput_between_isolates,
    crash_notice,
    run_over_large_array,
    exit_large_array,
    port_large_array,
    idle_memory,
    worker_idle_memory,
]
# The same with ``--across-nodes``: isolates and raw actors pinned to other nodes.
ACROSS_NODES_CASES = [
    ping_pong_across_nodes,
    ping_pong_isolates_across_nodes,
    worker_round_trip_across_nodes,
    throughput_across_nodes,
    throughput_isolates_across_nodes,
    stream_across_nodes_buffer_16,
    stream_across_nodes_buffer_1024,
]
ISOLATE_POOL = 2


@dataclass(slots=True)
class Result:
    """The readings of one figure, with their medians and ratios."""

    name: str
    unit: str
    higher_is_better: bool
    readings: dict[str, list[float]] = field(default_factory=dict)

    @property
    def medians(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.readings.items()}

    @property
    def ratios(self) -> dict[str, float]:
        """rayisolates relative to each comparator; above 1 means rayisolates wins."""
        medians = self.medians
        ours = medians[OURS]
        return {
            name: (ours / value if self.higher_is_better else value / ours)
            for name, value in medians.items()
            if name != OURS and value and ours
        }


def _measure(figure: Figure, progress: Callable[[], None]) -> Result:
    result = Result(figure.name, figure.unit, figure.higher_is_better)
    for name in figure.contenders:
        result.readings[name] = []
    for _ in range(figure.rounds):
        for name, sample in figure.contenders.items():
            result.readings[name].append(sample())
        progress()
    return result


def _progress_bar(total: int) -> Callable[[], None]:
    done = 0
    interactive = sys.stderr.isatty()

    def advance() -> None:
        nonlocal done
        done += 1
        if interactive or done == total:
            filled = 30 * done // total
            sys.stderr.write(f"\r    [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} rounds")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return advance


def value_text(value: float) -> str:
    """A measured value as people write it: ``456,789``, ``539``, ``37.9``, ``2.11``, ``0.0354``."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _table(results: Sequence[Result]) -> str:
    lines = [
        "| figure | rayisolates | comparator | comparator median | ratio |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        medians = result.medians
        for name, ratio in result.ratios.items():
            lines.append(
                f"| {result.name} | {value_text(medians[OURS])} {result.unit} | {name} | "
                f"{value_text(medians[name])} {result.unit} | {ratio_text(ratio)} |"
            )
    return "\n".join(lines)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit(
            "rayisolates bench --plot needs matplotlib: pip install 'rayisolates[bench]'"
        ) from None
    return plt


def _plot(results: Sequence[Result], path: str) -> None:
    """A bar per (figure, comparator): how many times better rayisolates is, grouped."""
    figures = [{"name": result.name, "ratios": result.ratios} for result in results]
    draw(_pyplot(), rows_of([("this run", figures)]), path, _TITLE)


_TITLE = "rayisolates bench: how many times better rayisolates is (medians, interleaved runs)"


def plot(json_paths: Sequence[str], plot_path: str) -> int:
    """Draw the chart of runs saved with ``--json``, without measuring; returns the exit status.

    Args:
        json_paths: The saved runs, in order: a figure named again in a
            later file replaces the earlier one (see :mod:`.chart`).
        plot_path: Where the chart goes (PNG).

    Raises:
        SystemExit: Without matplotlib, or a file that is not a saved run.
    """
    plt = _pyplot()
    try:
        rows = load_rows(json_paths)
    except (OSError, ValueError) as error:
        raise SystemExit(f"rayisolates bench --from: {error}") from None
    draw(plt, rows, plot_path, _TITLE)
    print(f"{len(rows)} rows from {len(json_paths)} file(s) drawn in {plot_path}")
    return 0


def bench(
    quick: bool = False,
    json_path: str | None = None,
    address: str | None = None,
    plot_path: str | None = None,
    across_nodes: bool = False,
    only: str | None = None,
) -> int:
    """Measure every figure and print the table; returns the exit status.

    Ratios read "how many times better rayisolates is": above 1 it wins,
    below 1 the comparator does.

    Args:
        quick: A short run (few rounds), for smoke tests.
        json_path: Also write each figure's readings, medians and ratios
            there, with the mode and the cluster's nodes (a list of rows);
            and beside it, in ``X.meta.json`` for ``X.json``, the record of
            the run: machine, Python, Ray and rayisolates versions, date.
        address: The Ray cluster to measure on (default: a local Ray).
        plot_path: Also draw the ratios there (needs matplotlib).
        across_nodes: Measure what crosses nodes instead. Without
            ``address``, on three Ray nodes started on this machine and shut
            down at the end; with it, on that cluster, which must have
            nodes other than the driver's holding the custom resources
            ``node_a`` and ``node_b``.
        only: Comma-separated words: only the cases whose name holds one.

    Raises:
        SystemExit: ``across_nodes`` with an ``address`` whose cluster lacks
            those nodes, or ``plot_path`` without matplotlib.
    """
    if plot_path:
        _pyplot()  # fail before measuring, not after, if matplotlib is missing
    cases = ACROSS_NODES_CASES if across_nodes else CASES
    if only is not None:
        words = [word.strip() for word in only.split(",") if word.strip()]
        chosen = [case for case in cases if any(word in case.__name__ for word in words)]
        if not chosen:
            names = ", ".join(case.__name__ for case in cases)
            raise SystemExit(
                f"rayisolates bench --only {only!r} matches no case; the cases: {names}"
            )
        cases = chosen
    results = []
    with ExitStack() as ending:  # undone in reverse: the loop, rayisolates, the nodes
        started_here = across_nodes and address is None
        if started_here:
            print("starting 3 Ray nodes on this machine ...", file=sys.stderr, flush=True)
            address = ending.enter_context(local_cluster())
        # Across nodes every isolate is placed, and placed spawns bypass the warm pool.
        init(address=address, isolate_pool=0 if across_nodes else ISOLATE_POOL)
        ending.callback(shutdown)
        cluster = cluster_shape(started_here) if across_nodes else None
        loop = asyncio.new_event_loop()
        ending.callback(loop.close)
        for number, case in enumerate(cases, 1):
            with case(loop, quick) as figure:
                print(f"[{number}/{len(cases)}] {figure.name}", file=sys.stderr, flush=True)
                results.append(_measure(figure, _progress_bar(figure.rounds)))
        measured_on = ray_cluster()
    print(_table(results))
    if json_path:
        mode = "across-nodes" if across_nodes else "single-node"
        payload: list[dict[str, Any]] = [
            {
                **asdict(result),
                "medians": result.medians,
                "ratios": result.ratios,
                "mode": mode,
                **({"cluster": cluster} if cluster else {}),
            }
            for result in results
        ]
        with open(json_path, "w") as out:
            json.dump(payload, out, indent=2)
        record = run_record(
            mode=mode,
            quick=quick,
            cases=[result.name for result in results],
            cluster=measured_on,
        )
        with open(sidecar_path(json_path), "w") as out:
            json.dump(record, out, indent=2)
    if plot_path:
        _plot(results, plot_path)
    return 0
