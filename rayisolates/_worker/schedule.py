"""The order in which a worker starts its calls, and how many run at once, without Ray.

Calls start in the order they arrived, at most ``max_parallel`` at once: a
call that would exceed the bound waits, and every call after it waits
behind it, so a quick sync call never overtakes a queued async one. A sync
call holds the isolate's loop while it runs, so sync calls never overlap;
``async def`` calls (and streams, until they end) interleave up to the
bound. After :meth:`Schedule.close` the calls already queued still run::

    open --close()--> closing --last call finished--> ended
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

__all__ = ["Schedule"]

C = TypeVar("C")


class Schedule(Generic[C]):
    """Calls queued and running in a worker; what to start next.

    Args:
        max_parallel: The most calls running at once.
    """

    def __init__(self, max_parallel: int) -> None:
        self.max_parallel = max_parallel
        self.queued: collections.deque[C] = collections.deque()
        self.running = 0
        self.completed = 0
        self.failed = 0
        self.closing = False

    def arrived(self, call: C) -> list[C]:
        """A call came: the calls to start now, in order (perhaps none)."""
        self.queued.append(call)
        return self._startable()

    def finished(self, ok: bool) -> list[C]:
        """A running call ended (``ok``: it gave a value): the calls to start now."""
        assert self.running > 0, "a call finished that was not running"
        self.running -= 1
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        return self._startable()

    def close(self) -> None:
        """Take no more calls; those queued and running still finish."""
        self.closing = True

    @property
    def ended(self) -> bool:
        """Closing, and every call has finished."""
        return self.closing and not self.queued and self.running == 0

    def stats(self) -> dict[str, int]:
        """``pending`` (queued or running), ``running``, ``completed``, ``failed``."""
        return {
            "pending": len(self.queued) + self.running,
            "running": self.running,
            "completed": self.completed,
            "failed": self.failed,
        }

    def _startable(self) -> list[C]:
        starting = []
        while self.queued and self.running < self.max_parallel:
            starting.append(self.queued.popleft())
            self.running += 1
        return starting
