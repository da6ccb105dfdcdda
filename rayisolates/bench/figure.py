"""What every benchmark case shares: the ``Figure`` it yields, and timing helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["OURS", "Figure", "actor", "milliseconds"]

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
