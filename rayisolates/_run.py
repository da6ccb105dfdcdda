"""``Isolate.run`` and ``compute``: one function, run once in another isolate.

A module-level function gets a Ray remote function of its own, made once and
reused, so a run costs what a raw ``@ray.remote`` call costs: one task
submission, no function pickled per call. Closures and other callables travel
as an argument of one shared task instead (a fresh closure per call would
otherwise export a fresh remote function each time). Arguments larger than
Ray's inline limit ride the object store.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import ray
from ray import cloudpickle

from ._context.connection import ensure_started
from ._context.context import peek
from ._errors import RemoteError
from ._future import IsolateFuture
from ._options import TASK_OPTIONS, check_options
from ._transport.sendable import refusal, unsendable_call

__all__ = ["compute", "run"]

R = TypeVar("R")


async def _awaited(awaitable: Awaitable[R]) -> R:
    return await awaitable


def _execute(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` inside a Ray worker; make whatever it raises fit to travel back.

    What ``fn`` sent through ports is delivered before the result is.
    """
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return result
    except Exception as error:
        raise _portable(error) from None
    finally:
        context = peek()
        if context is not None:
            context.flush()


def _portable(error: Exception) -> Exception:
    """``error`` with its traceback as a note, or a RemoteError if it can't travel."""
    frames = error.__traceback__.tb_next if error.__traceback__ else None
    stack = "".join(traceback.format_exception(type(error), error, frames))
    context = ray.get_runtime_context()
    node = context.get_node_id()[:8]
    where = f"isolate {context.get_task_name()!r} (pid {os.getpid()}, node {node})"
    try:
        error.add_note(f"\nRemote traceback, from {where}:\n{stack.rstrip()}")
        pickle.loads(cloudpickle.dumps(error))
    except Exception:
        return RemoteError(f"{type(error).__qualname__}: {error}", stack)
    return error


_execute_task = ray.remote(max_retries=0)(_execute)
_tasks_by_function: dict[Callable[..., Any], Any] = {}


def _task_for(fn: Callable[..., Any]) -> tuple[Any, tuple[Any, ...]]:
    """The remote function to submit and the leading arguments it needs."""
    qualname = getattr(fn, "__qualname__", "<")
    if not (inspect.isfunction(fn) or inspect.isbuiltin(fn)) or "<" in qualname:
        return _execute_task, (fn,)
    task = _tasks_by_function.get(fn)
    if task is None:

        def call(*args: Any) -> Any:
            return _execute(fn, *args)

        call.__name__ = call.__qualname__ = qualname  # what Ray shows for the task
        task = _tasks_by_function[fn] = ray.remote(max_retries=0)(call)
    return task, ()


def run(
    fn: Callable[..., Any], *args: Any, debug_name: str | None = None, **options: Any
) -> IsolateFuture[Any]:
    """Submit ``fn(*args)`` as one Ray task; the public face is ``Isolate.run``."""
    if not callable(fn):
        raise TypeError(f"Isolate.run() needs a callable, got {fn!r}")
    check_options(
        options,
        TASK_OPTIONS,
        "Isolate.run()",
        "Ray task options; pass the function's own arguments positionally or bind them "
        "with functools.partial",
    )
    ensure_started()
    task, leading = _task_for(fn)
    if debug_name is not None:
        options["name"] = debug_name
    if options:
        task = task.options(**options)
    try:
        ref = task.remote(*leading, *args)
    except TypeError as error:
        raise _unsendable(error, fn, args) from None
    return IsolateFuture.of_ref(ref, debug_name or str(getattr(fn, "__qualname__", "Isolate.run")))


def _unsendable(error: TypeError, fn: Callable[..., Any], args: tuple[Any, ...]) -> TypeError:
    part = unsendable_call(fn, args) or f"its arguments ({error})"
    return refusal("Isolate.run()", part, "nothing was submitted")


@overload
def compute(
    callback: Callable[[Any], Awaitable[R]], message: Any, *, debug_name: str | None = None
) -> IsolateFuture[R]: ...


@overload
def compute(
    callback: Callable[[Any], R], message: Any, *, debug_name: str | None = None
) -> IsolateFuture[R]: ...


def compute(
    callback: Callable[[Any], Any], message: Any, *, debug_name: str | None = None
) -> IsolateFuture[Any]:
    """Flutter's ``compute``: ``Isolate.run(callback, message)``."""
    return run(callback, message, debug_name=debug_name)
