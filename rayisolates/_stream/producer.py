"""A stream's producer: runs the generator in its isolate or pool member, as credits allow.

See ``consumer`` for the protocol between the two. Each item leaves as soon
as it is made: a generator may block the producer's loop right after a
yield, so nothing may wait for the loop to send it (the transport batches
what a fast producer sends).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from .._context.context import current
from .._ports import RawReceivePort
from .._run import _portable
from .._sendport import SendPort
from .._transport.codec import encode, open_encoded_async
from .._transport.wire import Encoded
from .credits import Granted

__all__ = ["produce", "produce_from", "stream_isolate"]

_SYNC_YIELD_EVERY = 16  # a sync generator lets stops and credits in every this many items


class _Credits:
    """:class:`Granted` fed by the credit port (its handler runs on the producer's loop, no
    task of its own), awaited by the pump."""

    def __init__(self, buffer: int) -> None:
        self.granted = Granted(buffer)
        self._changed = asyncio.Event()
        self.port: RawReceivePort[Any] = RawReceivePort(self._received, "stream-credits")

    def _received(self, message: int | None) -> None:
        self.granted.received(message)
        self._changed.set()

    async def take(self) -> bool:
        """Wait for a credit and spend it; ``False`` once the consumer has stopped."""
        while (spent := self.granted.spend()) is None:
            self._changed.clear()
            await self._changed.wait()
        return spent


async def produce(items: SendPort[Any], work: Encoded, buffer: int) -> None:
    """A pool member's stream task: produce, then send the outcome after the items."""
    items.send(await _outcome(items, _opener(work), buffer))


async def produce_from(
    items: SendPort[Any], make: Callable[[], Any], what: str, buffer: int
) -> bool:
    """A worker's generator method: ``make()`` gives the generator (its arguments are bound
    already); produce, then send the outcome after the items. ``True`` if it ended without
    an error."""

    async def opened() -> tuple[Any, str]:
        return make(), what

    outcome = await _outcome(items, opened, buffer)
    items.send(outcome)
    return bool(outcome[0] == "done")


async def stream_isolate(setup: tuple[SendPort[Any], Encoded, int]) -> None:
    """The entry point of a spawned stream isolate: produce, then exit with the outcome."""
    items, work, buffer = setup
    current().exit(items, await _outcome(items, _opener(work), buffer))  # before the exit notice


def _opener(work: Encoded) -> Callable[[], Awaitable[tuple[Any, str]]]:
    """Opens the task ``work`` encodes and calls it: the source, and the name of what made it.

    Opened in the producer, not by the port: a function this process cannot
    load fails its stream, not the isolate.
    """

    async def opened() -> tuple[Any, str]:
        fn, args = await open_encoded_async(work)
        return fn(*args), getattr(fn, "__qualname__", repr(fn))

    return opened


async def _outcome(
    items: SendPort[Any], make: Callable[[], Awaitable[tuple[Any, str]]], buffer: int
) -> Any:
    """Produce; ``("done",)`` or ``("error", encoded error)``, for the consumer to end on."""
    try:
        await _produce(items, make, buffer)
    except Exception as error:
        return ("error", encode(_portable(error), "Isolate.stream() raising"))
    return ("done",)


async def _produce(
    items: SendPort[Any], make: Callable[[], Awaitable[tuple[Any, str]]], buffer: int
) -> None:
    """Run the generator ``make`` gives, sending its items to ``items`` as credits allow.

    Returns when the generator is exhausted or the consumer stopped; raises
    what the generator raised.
    """
    credits = _Credits(buffer)
    items.send(("ready", credits.port.send_port))
    try:
        source, name = await make()
        if inspect.isasyncgen(source):
            await _pump_async(source, items, credits)
        elif isinstance(source, Iterator):
            await _pump_sync(source, items, credits)
        else:
            raise TypeError(
                f"Isolate.stream() needs a generator function (or one returning an "
                f"iterator); {name} returned {type(source).__name__}"
            )
    finally:
        credits.port.close()


def _item(value: Any) -> Any:
    return ("item", encode(value, "Isolate.stream() yielding"))


async def _pump_async(source: Any, items: SendPort[Any], credits: _Credits) -> None:
    try:
        while await credits.take():
            try:
                value = await source.__anext__()
            except StopAsyncIteration:
                return
            items.send(_item(value))
    finally:
        await source.aclose()


async def _pump_sync(source: Iterator[Any], items: SendPort[Any], credits: _Credits) -> None:
    try:
        count = 0
        while await credits.take():
            try:
                value = next(source)
            except StopIteration:
                return
            items.send(_item(value))
            count += 1
            if count % _SYNC_YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let a stop or credits arrive
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
