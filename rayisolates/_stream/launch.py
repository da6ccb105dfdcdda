"""Starting a stream: the checks every launcher makes, and ``Isolate.stream`` itself."""

from __future__ import annotations

import concurrent.futures
import weakref
from collections.abc import Callable
from typing import Any

from .._sendport import SendPort
from .._spawn import spawn
from .._transport.codec import encode
from .._transport.sendable import refusal, unsendable_call
from .._transport.wire import Encoded
from .consumer import IsolateStream
from .producer import produce, stream_isolate

__all__ = ["check_stream_call", "encode_task", "on_pool", "on_worker", "stream"]


def check_stream_call(action: str, fn: Any, buffer: int) -> None:
    """Refuse what no producer could run, before anything starts."""
    if not callable(fn):
        raise TypeError(f"{action} needs a generator function, got {fn!r}")
    if not isinstance(buffer, int) or isinstance(buffer, bool) or buffer < 1:
        raise ValueError(f"{action}: buffer must be an int of 1 or more, got {buffer!r}")


def encode_task(action: str, fn: Any, args: tuple[Any, ...]) -> Encoded:
    """``(fn, args)`` in travelling form; ``TypeError`` naming the part that cannot travel."""
    try:
        return encode((fn, args), action)
    except TypeError:
        part = unsendable_call(fn, args) or "the task"
        raise refusal(action, part, "nothing was submitted") from None


def stream(
    fn: Callable[..., Any],
    *args: Any,
    buffer: int = 16,
    debug_name: str | None = None,
    **options: Any,
) -> IsolateStream[Any]:
    """``Isolate.stream``: the generator ``fn(*args)`` in a new isolate (see ``_isolate``)."""
    check_stream_call("Isolate.stream()", fn, buffer)
    work = encode_task("Isolate.stream()", fn, args)
    result: IsolateStream[Any] = IsolateStream(str(getattr(fn, "__qualname__", fn)), buffer)
    spawning = spawn(
        stream_isolate,
        (result.send_port, work, buffer),
        on_exit=result.send_port,
        debug_name=debug_name,
        **options,
    )

    def spawned(done: concurrent.futures.Future[Any]) -> None:
        error = done.exception()
        if error is not None:
            result._finish(error)
            return
        isolate = done.result()
        result._started(lambda: isolate.kill(priority=type(isolate).IMMEDIATE))

    spawning.add_done_callback(spawned)
    return result


def on_pool(
    what: str,
    work: Encoded,
    buffer: int,
    submit: Callable[[Encoded], tuple[int, concurrent.futures.Future[Any]]],
    abandon: Callable[[int], None],
) -> IsolateStream[Any]:
    """``IsolatePool.stream``: the generator ``work`` encodes as a task of a pool.

    Args:
        what: Names the stream in errors.
        work: The encoded ``(fn, args)``.
        buffer: Items made and not yet taken, at most.
        submit: Submits the producing task to the pool: its id and future.
        abandon: Ends the member running task ``task_id`` by force (or never
            sends the task).
    """
    result: IsolateStream[Any] = IsolateStream(what, buffer)
    action = "IsolatePool.stream()"
    task_id, future = submit(encode_task(action, produce, (result.send_port, work, buffer)))
    result._started(lambda: abandon(task_id))
    _fail_with(result, future)
    return result


def on_worker(
    what: str,
    buffer: int,
    submit: Callable[[SendPort[Any]], concurrent.futures.Future[Any]],
) -> IsolateStream[Any]:
    """A worker's generator method: ``submit`` sends the call, with the stream's port.

    A stopped stream whose generator is stuck in sync code ends on this side
    after the grace period; the worker is not ended for it (its object would
    go too): the generator is closed at its next ``yield``.

    Args:
        what: Names the stream in errors.
        buffer: Items made and not yet taken, at most.
        submit: Sends the call; its future fails if the worker ends first.
    """
    result: IsolateStream[Any] = IsolateStream(what, buffer)
    future = submit(result.send_port)
    result._started(_left_running)
    _fail_with(result, future)
    return result


def _left_running() -> None:
    """A worker's stuck generator is not ended by force."""


def _fail_with(result: IsolateStream[Any], future: concurrent.futures.Future[Any]) -> None:
    """End ``result`` with the error ``future`` fails with: the producer's end comes after
    its items, on the stream's own port; what comes here is the isolate running it dying
    (or being ended) under it."""
    weakly = weakref.ref(result)  # the task must not keep the stream from being dropped

    def ended(done: concurrent.futures.Future[Any]) -> None:
        stream = weakly()
        error = None if done.cancelled() else done.exception()
        if stream is not None and error is not None:
            stream._finish(error)

    future.add_done_callback(ended)
