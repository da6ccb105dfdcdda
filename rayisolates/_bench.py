"""``rayisolates bench``: rayisolates next to what users would write instead.

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
from dataclasses import asdict, dataclass, field
from typing import Any

from ._bench_cases import CASES, OURS, Figure
from ._runtime import init, shutdown

__all__ = ["bench"]


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
    loop = asyncio.new_event_loop()
    results = []
    try:
        for number, case in enumerate(CASES, 1):
            with case(loop, quick) as figure:
                print(f"[{number}/{len(CASES)}] {figure.name}", file=sys.stderr, flush=True)
                results.append(_measure(figure, _progress_bar(figure.rounds)))
    finally:
        loop.close()
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
