"""What runs inside each pool member: a task port, tasks run in order, answers sent back.

Tasks start in the order they arrive, at most ``max_parallel`` at once
(``_schedule.Starter``): a sync function runs to its end inside the task
port's handler and is answered there; an ``async def`` one (or a task whose
arguments wait in the object store) runs as a task of the isolate's loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable
from typing import Any, NamedTuple

from .._context.context import current
from .._errors import RemoteError
from .._ports import RawReceivePort
from .._run import _portable
from .._schedule import Schedule, Starter
from .._sendport import SendPort
from .._transport.codec import (
    STORED,
    encode,
    encode_plain,
    is_plain,
    open_encoded,
    open_encoded_async,
)
from .._transport.wire import Encoded
from .functions import Loaded, call

__all__ = ["member"]


def member(setup: tuple[SendPort[Any], int, int]) -> None:
    """A pool member's entry point: announce a task port; run what arrives on it in order,
    at most ``max_parallel`` at once (the rest wait here, sent ahead); answer each task
    ``(task_id, ok, encoded value or error, seconds it ran)`` on the pool's result port.

    A task is ``(task_id, key, data, work)``: ``key`` names a function this member
    holds (``data``, its pickled bytes, come with the first task calling it) and
    ``work`` encodes ``(args, kwargs)`` (``kwargs`` ``None``: a chunk, ``args`` a list of
    argument tuples); without a key ``work`` encodes ``(fn, args)``. ``None`` tells the
    member to finish what it has and end. Its open task port keeps the isolate alive.
    """
    results, member_id, max_parallel = setup
    served = _Member(results, max_parallel)
    results.send(("ready", member_id, served.port.send_port))


class _Task(NamedTuple):
    task_id: int
    key: bytes | None
    work: Encoded


class _Member:
    """A member's task port, its functions and its schedule."""

    def __init__(self, results: SendPort[Any], max_parallel: int) -> None:
        self.results = results
        self.context = current()
        self.functions = Loaded()
        self.starter: Starter[_Task] = Starter(
            Schedule(max_parallel), self._run, self._task_done, self._ended
        )
        self.port: RawReceivePort[Any] = RawReceivePort(self._on_task, "pool-member")

    def _on_task(self, task: Any) -> None:
        if task is None:  # told to end: finish what runs and waits, then go
            self.starter.close()
            return
        task_id, key, data, work = task
        if data is not None:  # in arrival order: the pool mirrors this table
            self.functions.add(key, data)
        self.starter.arrived(_Task(task_id, key, work))

    def _run(self, task: _Task) -> bool | Awaitable[Any]:
        """Start a task: answered here if it finishes at once, else what finishes it.

        The task is opened here, not by the port: a function this process cannot
        load (its module is missing here, say) fails its task, not the member.
        """
        started = time.perf_counter()
        if task.work[0] == STORED:
            return self._opened_later(task, started)
        try:
            fn, args, kwargs = self._open(task, open_encoded(task.work))
            if kwargs is None:  # a chunk: run_each may await
                return self._finished_later(task, started, call(fn, args, kwargs))
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                return self._finished_later(task, started, value)
        except Exception as error:
            return self._answer(task, started, False, error)
        return self._answer(task, started, True, value)

    def _open(self, task: _Task, opened: Any) -> tuple[Any, Any, dict[str, Any] | None]:
        if task.key is None:
            fn, args = opened
            return fn, args, {}
        args, kwargs = opened
        return self.functions.get(task.key), args, kwargs

    async def _opened_later(self, task: _Task, started: float) -> tuple[bool, Any, float]:
        try:
            fn, args, kwargs = self._open(task, await open_encoded_async(task.work))
            return True, await call(fn, args, kwargs), started
        except Exception as error:
            return False, error, started

    async def _finished_later(
        self, task: _Task, started: float, value: Awaitable[Any]
    ) -> tuple[bool, Any, float]:
        try:
            return True, await value, started
        except Exception as error:
            return False, error, started

    def _task_done(self, task: _Task, done: asyncio.Future[Any]) -> bool:
        if done.cancelled() or done.exception() is not None:  # cancelled, or a BaseException
            cause = "was cancelled" if done.cancelled() else f"raised {done.exception()!r}"
            return self._answer(task, time.perf_counter(), False, RemoteError(f"a task {cause}"))
        ok, value, started = done.result()
        return self._answer(task, started, ok, value)

    def _answer(self, task: _Task, started: float, ok: bool, value: Any) -> bool:
        """Send a task's outcome to the pool; whether it succeeded (a result that cannot
        be sent fails the task with that ``TypeError``)."""
        seconds = time.perf_counter() - started
        try:
            answer = (
                encode(value, "returning a pool task's result")
                if ok
                else encode(_portable(value), "raising from a pool task")
            )
        except TypeError as error:
            ok, answer = False, encode(_portable(error), "raising from a pool task")
        reply = (task.task_id, ok, answer, seconds)
        if is_plain(answer):
            self.context.send_encoded(self.results, encode_plain(reply))
        else:
            self.results.send(reply)
        return ok

    def _ended(self) -> None:
        self.port.close()  # nothing else keeps the isolate: it ends
