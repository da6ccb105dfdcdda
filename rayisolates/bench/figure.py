"""What every benchmark case shares: the ``Figure`` it yields, and timing helpers."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "OURS",
    "Figure",
    "actor",
    "median_round_trip_ms",
    "median_round_trip_ms_async",
    "milliseconds",
    "pipe_round_trips",
]

OURS = "rayisolates"


class Figure:
    """One thing measured: a sample function per contender, ``OURS`` first."""

    def __init__(
        self,
        name: str,
        unit: str,
        higher_is_better: bool,
        contenders: dict[str, Callable[[], float]],
        rounds: int,
    ) -> None:
        self.name = name
        self.unit = unit
        self.higher_is_better = higher_is_better
        self.contenders = contenders
        self.rounds = rounds


def milliseconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def median_round_trip_ms(round_trip: Callable[[int], object], count: int) -> float:
    """The median of ``count`` timed calls ``round_trip(i)``, in ms."""
    times = []
    for i in range(count):
        started = time.perf_counter()
        round_trip(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def median_round_trip_ms_async(
    round_trip: Callable[[int], Awaitable[object]], count: int
) -> float:
    """:func:`median_round_trip_ms` for a round trip that is awaited."""
    times = []
    for i in range(count):
        started = time.perf_counter()
        await round_trip(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def actor(actor_class: Any) -> Any:
    """A ``@ray.remote`` class, typed loosely (Ray's stubs do not know ``.remote``)."""
    return actor_class


def pipe_round_trips(batch: int) -> tuple[Callable[[], float], Callable[[], None]]:
    """A child process echoing on a ``multiprocessing.Pipe``: a reading (median ms of ``batch``
    round trips) and a function that stops the child."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=pipe_echo, args=(theirs,), daemon=True)
    child.start()

    def round_trip(i: int) -> object:
        ours.send(i)
        return ours.recv()

    def reading() -> float:
        return median_round_trip_ms(round_trip, batch)

    def stop() -> None:
        ours.send(None)
        child.join(5)

    reading()  # the child is up
    return reading, stop


def pipe_echo(connection: Any) -> None:
    """The other end of a ``multiprocessing.Pipe``: send back what arrives, until ``None``."""
    while (message := connection.recv()) is not None:
        connection.send(message)
