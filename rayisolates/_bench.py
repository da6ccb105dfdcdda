"""``rayisolates bench``: rayisolates next to what users would write instead.

Every figure is measured for rayisolates and its comparators interleaved in
one run (A, B, A, B, ...), so a noisy machine slows both alike; the report
gives medians and the ratio to each comparator, never one time alone.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import ray

from ._isolate import Isolate
from ._runtime import init, shutdown

__all__ = ["Figure", "bench"]

OURS = "rayisolates"


@dataclass(frozen=True, slots=True)
class Figure:
    """One thing measured: a sample function per contender, ``OURS`` first.

    A sample function returns one reading in ``unit``; ``rounds`` readings are
    taken per contender, interleaved.
    """

    name: str
    unit: str
    higher_is_better: bool
    contenders: dict[str, Callable[[], float]]
    rounds: int


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


def _noop() -> None:
    return None


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _run_figures(quick: bool) -> list[Figure]:
    raw_noop = ray.remote(max_retries=0)(_noop)
    rounds = 30 if quick else 300

    def isolate_run() -> float:
        return _timed(lambda: Isolate.run(_noop).result())

    def raw_task() -> float:
        return _timed(lambda: ray.get(raw_noop.remote()))

    for _ in range(5):  # warm both paths: workers started, functions exported
        isolate_run()
        raw_task()
    return [
        Figure(
            "Isolate.run no-op round trip",
            "ms",
            higher_is_better=False,
            contenders={OURS: isolate_run, "raw @ray.remote task": raw_task},
            rounds=rounds,
        )
    ]


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
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} rounds")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    return advance


def _table(results: Sequence[Result]) -> str:
    lines = [
        "| figure | rayisolates | comparator | comparator median | ratio |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        medians = result.medians
        for name, ratio in result.ratios.items():
            lines.append(
                f"| {result.name} | {medians[OURS]:.3g} {result.unit} | {name} | "
                f"{medians[name]:.3g} {result.unit} | {ratio:.2f}x |"
            )
    return "\n".join(lines)


def bench(quick: bool = False, json_path: str | None = None, address: str | None = None) -> int:
    """Measure every figure and print the table; returns the exit status.

    Ratios read "how many times better rayisolates is": above 1 it wins,
    below 1 the comparator does.
    """
    init(address=address)
    try:
        figures = _run_figures(quick)
        advance = _progress_bar(sum(figure.rounds for figure in figures))
        results = [_measure(figure, advance) for figure in figures]
    finally:
        shutdown()
    print(_table(results))
    if json_path:
        payload: list[dict[str, Any]] = [
            {**asdict(result), "medians": result.medians, "ratios": result.ratios}
            for result in results
        ]
        with open(json_path, "w") as out:
            json.dump(payload, out, indent=2)
    return 0
