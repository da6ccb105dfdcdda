"""Stand-ins for the Ray calls the transport makes, so its logic runs without Ray.

Only the seam is replaced (the function that makes one call); the errors
completed calls carry are Ray's own exception types.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray import exceptions as ray_errors


def unavailable() -> BaseException:
    error: BaseException = ray_errors.ActorUnavailableError("temporarily unavailable", None)
    return error


def died() -> BaseException:
    error: BaseException = ray_errors.ActorDiedError()
    return error


@dataclass
class Call:
    """One call made: its arguments and the future its caller holds."""

    destination: str
    route: Any
    sender: str
    seq: int
    batch: list[Any]
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)

    def succeed(self, result: Any = None) -> None:
        self.future.set_result(result)

    def fail(self, error: BaseException) -> None:
        self.future.set_exception(error)


class Calls:
    """A transmit function that records every call and leaves it pending."""

    def __init__(self) -> None:
        self.made: list[Call] = []

    def transmit(
        self, destination: str, route: Any, sender: str, seq: int, batch: list[Any]
    ) -> concurrent.futures.Future[Any]:
        call = Call(destination, route, sender, seq, list(batch))
        self.made.append(call)
        return call.future

    def pending(self) -> list[Call]:
        return [call for call in self.made if not call.future.done()]


def inline(future: concurrent.futures.Future[Any], callback: Callable[[Any], None]) -> None:
    """An ``on_done`` that runs ``callback(future)`` on whatever thread completes it (the
    transport hands completions to a thread of its own; these futures are not Ray's)."""
    future.add_done_callback(callback)


class Later:
    """A schedule that runs nothing until told: retries happen when the test says."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> None:
        self.due.append((delay, callback))

    def run_all(self) -> int:
        ran = 0
        while self.due:
            due, self.due = self.due, []
            for _, callback in due:
                callback()
                ran += 1
        return ran
