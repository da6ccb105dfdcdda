"""The worker's side: build the object in the isolate, then serve calls on its call port.

The entry point (:func:`serve`) builds ``factory(*args)``, says what the
object has (its methods' kinds), and returns; the call port keeps the
isolate alive until the worker is closed. Calls start in the order they
arrive (``_schedule.Starter``): a sync method runs right away on the
isolate's loop, inside the port's handler; an ``async def`` method runs as
a task, whose body begins before the next call starts; a generator
method feeds a stream (``_stream.producer``). Each
call's outcome goes back on its caller's reply port, its error carried as
``Isolate.run`` carries one (same type, remote stack as a note).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any

from .._context.context import current
from .._context.figures import register_worker, unregister_worker
from .._errors import RemoteError
from .._ports import RawReceivePort
from .._run import _portable
from .._schedule import Schedule, Starter
from .._sendport import SendPort
from .._stream.producer import produce_from
from .._transport.codec import encode, encode_plain, is_plain, open_encoded, open_encoded_async
from .._transport.wire import Encoded
from .wire import Call, CloseWorker, Failed, Hello, Ready

__all__ = ["kinds_of", "serve"]

log = logging.getLogger("rayisolates.worker")


async def serve(setup: tuple[SendPort[Any], Encoded, int]) -> None:
    """A worker isolate's entry point: build the object, announce it, serve its calls.

    Args:
        setup: Where to announce the worker (``Ready`` or ``Failed``), the
            encoded ``(factory, args)``, and ``max_parallel``.
    """
    announce, work, max_parallel = setup
    try:
        factory, args = await open_encoded_async(work)
        target = factory(*args)
        if inspect.isawaitable(target):
            target = await target
        kinds = kinds_of(target)
    except Exception as error:
        announce.send(Failed(encode(_portable(error), "building the worker")))
        return
    served = _Served(target, max_parallel)
    announce.send(Ready(served.port.send_port, kinds, type(target).__qualname__))


def kinds_of(target: Any) -> dict[str, str]:
    """What each public attribute of ``target`` is: ``sync``, ``async``, ``gen`` (a
    generator method), ``agen`` (an async generator method), or ``value``.

    Read without running properties (a property is a ``value``).
    """
    kinds = {}
    for name in dir(target):
        if name.startswith("__"):
            continue
        try:
            found = inspect.getattr_static(target, name)
        except AttributeError:
            continue
        if isinstance(found, staticmethod | classmethod):
            found = found.__func__
        elif isinstance(found, property) or not callable(found):
            kinds[name] = "value"
            continue
        kinds[name] = _kind(found)
    return kinds


def _kind(function: Any) -> str:
    if inspect.isasyncgenfunction(function):
        return "agen"
    if inspect.isgeneratorfunction(function):
        return "gen"
    if inspect.iscoroutinefunction(function):
        return "async"
    return "sync"


class _Served:
    """The object, its call port, its callers' reply ports and its schedule."""

    def __init__(self, target: Any, max_parallel: int) -> None:
        self.target = target
        self.class_name = type(target).__qualname__
        self.context = current()
        self.debug_name = self.context.debug_name
        self.schedule: Schedule[Call] = Schedule(max_parallel)
        self.starter = Starter(self.schedule, self._run, self._task_done, self._ended)
        self.callers: dict[str, SendPort[Any]] = {}
        self.port: RawReceivePort[Any] = RawReceivePort(self._on_message, "worker-calls")
        register_worker(self)

    def stats(self) -> dict[str, Any]:
        """For ``rayisolates status``: the class and the calls' figures."""
        return {"class": self.class_name, **self.schedule.stats()}

    def _on_message(self, message: Any) -> None:
        if type(message) is tuple:
            message = Call._make(message)
        if isinstance(message, Call):
            if self.schedule.closing:
                self._reply(message, False, RemoteError(f"{self._what(message)}: {self._closed}"))
            else:
                self.starter.arrived(message)
        elif isinstance(message, Hello):
            self.callers[message.caller] = message.reply_port
        elif isinstance(message, CloseWorker):
            self.starter.close()

    @property
    def _closed(self) -> str:
        return f"the worker {self.debug_name or self.class_name} was closed before this call came"

    def _what(self, call: Call) -> str:
        return f"{self.class_name}.{call.name}" + ("" if call.mode == "get" else "()")

    def _run(self, call: Call) -> bool | Awaitable[Any]:
        """Start ``call``: whether it succeeded if it has finished already, else what
        finishes it (run as a task of the isolate)."""
        try:
            args, kwargs = ((), {}) if call.args is None else open_encoded(call.args)
            attribute = getattr(self.target, call.name)
            if call.mode == "get":
                return self._reply(call, True, attribute)
            if call.mode == "stream":
                assert call.stream is not None
                items, buffer = call.stream
                make = lambda: attribute(*args, **kwargs)  # noqa: E731
                return produce_from(items, make, self._what(call), buffer)
            value = attribute(*args, **kwargs)
            if inspect.isawaitable(value):
                return _awaited(value)
        except Exception as error:
            return self._reply(call, False, error)
        return self._reply(call, True, value)

    def _task_done(self, call: Call, task: asyncio.Future[Any]) -> bool:
        if task.cancelled():
            ok = self._reply(call, False, RemoteError(f"{self._what(call)} was cancelled"))
        elif (error := task.exception()) is not None:
            ok = self._reply(call, False, error)
        elif call.mode == "stream":
            ok = self._reply(call, True, None) and bool(task.result())
        else:
            ok = self._reply(call, True, task.result())
        return ok

    def _reply(self, call: Call, ok: bool, value: Any) -> bool:
        """Send the outcome of ``call`` to its caller; ``ok`` unless the value cannot be sent
        (the caller gets that ``TypeError`` instead)."""
        if not ok:
            value = encode(_portable(value), f"raising from {self._what(call)}")
        else:
            try:
                value = encode(value, f"returning from {self._what(call)}")
            except TypeError as error:
                ok, value = False, encode(_portable(error), "")
        reply_port = self.callers.get(call.caller)  # it said hello first: ports keep order
        if reply_port is None:
            log.error(
                "rayisolates: %s came from %s, unknown here; its answer is dropped",
                self._what(call),
                call.caller,
            )
            return ok
        reply = (call.call_id, ok, value)  # a Reply, as a plain tuple
        if is_plain(value):
            self.context.send_encoded(reply_port, encode_plain(reply))
        else:
            reply_port.send(reply)
        return ok

    def _ended(self) -> None:
        if not self.port.is_closed:
            unregister_worker(self)
            self.port.close()  # nothing else keeps the isolate: it ends


async def _awaited(value: Any) -> Any:
    return await value
