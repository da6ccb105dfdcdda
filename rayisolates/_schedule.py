"""The order in which an isolate starts the calls it serves, and how many run at once.

Two servers use it: an ``IsolateWorker``'s object (its method calls) and a
pool member (its tasks).

Calls start in the order they arrived, at most ``max_parallel`` at once: a
call that would exceed the bound waits, and every call after it waits
behind it, so a quick sync call never overtakes a queued async one. A sync
call holds the isolate's loop while it runs, so sync calls never overlap;
``async def`` calls (and streams, until they end) interleave up to the
bound. After :meth:`Schedule.close` the calls already queued still run::

    open --close()--> closing --last call finished--> ended

:class:`Schedule` is the bookkeeping, without a loop (unit-tested with
random sweeps); :class:`Starter` carries it out on the isolate's loop.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["Schedule", "Starter"]

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


class Starter(Generic[C]):
    """Starts the calls a :class:`Schedule` allows, in order, on the running loop.

    A call that finishes at once (a sync method, a sync task) runs to its end
    inside :meth:`arrived`, and may let more start. One that gives an
    awaitable runs as a task of the loop; the calls after it wait a turn of
    the loop, so that its body begins before theirs.

    Args:
        schedule: The bookkeeping.
        run: Starts a call: ``True``/``False`` when it has finished (whether
            it succeeded, its answer sent), or an awaitable that finishes it.
        finish: Called with the call and its task once the task is done:
            answers it, and returns whether it succeeded.
        ended: Called once the schedule has ended (closed, every call
            finished); may be called again later.
    """

    def __init__(
        self,
        schedule: Schedule[C],
        run: Callable[[C], bool | Awaitable[Any]],
        finish: Callable[[C, asyncio.Future[Any]], bool],
        ended: Callable[[], None],
    ) -> None:
        self.schedule = schedule
        self._run = run
        self._finish = finish
        self._ended = ended
        self.tasks: set[asyncio.Future[Any]] = set()
        self._due: collections.deque[C] = collections.deque()  # started in this order
        self._deferred = False  # the calls due wait for the loop's next turn

    def arrived(self, call: C) -> None:
        """A call came: start it now if the schedule allows, else once it does."""
        self._start(self.schedule.arrived(call))

    def close(self) -> None:
        """Take no more calls; ``ended`` once those queued and running have finished."""
        self.schedule.close()
        self._end_if_done()

    def _start(self, starting: list[C]) -> None:
        """Start calls in order, after those already due to start."""
        self._due.extend(starting)
        if not self._deferred:
            self._start_due()

    def _start_due(self) -> None:
        self._deferred = False
        while self._due:
            call = self._due.popleft()
            outcome = self._run(call)
            if isinstance(outcome, bool):
                self._due.extend(self.schedule.finished(outcome))
                continue
            task = asyncio.ensure_future(outcome)
            self.tasks.add(task)
            task.add_done_callback(functools.partial(self._task_done, call))
            # calls due now or arriving before the next turn wait for it
            self._deferred = True
            asyncio.get_running_loop().call_soon(self._start_due)  # after the task's step
            return
        self._end_if_done()

    def _task_done(self, call: C, task: asyncio.Future[Any]) -> None:
        self.tasks.discard(task)
        self._start(self.schedule.finished(self._finish(call, task)))

    def _end_if_done(self) -> None:
        if self.schedule.ended:
            self._ended()
