"""What every benchmark case shares: the ``Figure`` it yields, and timing helpers."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["OURS", "Figure", "actor", "milliseconds", "pipe_round_trips"]

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

    def reading() -> float:
        times = []
        for i in range(batch):
            started = time.perf_counter()
            ours.send(i)
            ours.recv()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    def stop() -> None:
        ours.send(None)
        child.join(5)

    reading()  # the child is up
    return reading, stop


def pipe_echo(connection: Any) -> None:
    """The other end of a ``multiprocessing.Pipe``: send back what arrives, until ``None``."""
    while (message := connection.recv()) is not None:
        connection.send(message)
