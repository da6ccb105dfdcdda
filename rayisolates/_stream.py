"""``Isolate.stream``: a generator in another isolate, its items sent back with backpressure.

The producer (:func:`produce`, in a spawned isolate or a pool member) and
the consumer (:class:`IsolateStream`, where the stream was asked for) talk
over two ports::

    producer                                   consumer
       | ("ready", credit port) ------------------> |
       | ("item", encoded item)  x credits -------> |  queued until taken
       | <------------------------------- n         |  n more items taken
       | <------------------------------- None      |  stop (close, break, gc)
       | ("done",) or ("error", encoded error) ---> |  the last message (a spawned
       |                                            |   producer's, by Isolate.exit)

The producer starts with ``buffer`` credits and spends one per item; at
none left it waits, so at most ``buffer`` items are produced and not yet
taken. The consumer gives credits back as items are taken, in chunks of a
quarter of the buffer (so three quarters stay in flight while credits
travel). Each item leaves as soon as it is made: a generator may block the
producer's loop right after a yield, so nothing may wait for the loop to
send it (the transport batches what a fast producer sends). Items travel
encoded inside the messages; large ones ride the object store and are
opened by the transport on arrival (the producer owns them and may end
before they are taken), small ones when taken. An item that cannot be
rebuilt here fails at its place in the stream.

A stop makes the producer close its generator (its ``finally`` runs) and
finish. A producer stuck in synchronous code cannot read the stop: after
``STOP_GRACE_SECONDS`` the consumer ends it by force (the isolate is
killed; a pool member is ended and replaced).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from ._context.context import current
from ._errors import RemoteError
from ._ports import RawReceivePort, ReceivePort
from ._run import _portable
from ._sendport import SendPort
from ._spawn import spawn
from ._transport.codec import encode, open_encoded, open_encoded_async
from ._transport.rpc import later
from ._transport.sendable import unsendable_call
from ._transport.wire import Encoded

__all__ = [
    "IsolateStream",
    "check_stream_call",
    "encode_task",
    "produce",
    "stream",
    "stream_isolate",
    "unsendable_task",
]

T = TypeVar("T")

STOP_GRACE_SECONDS = 3.0  # a stopped producer's time to finish before it is ended by force
_SYNC_YIELD_EVERY = 16  # a sync generator lets stops and credits in every this many items


# The producer: runs in the isolate or pool member ------------------------------------


class _Credits:
    """How many more items the consumer will take; whether it asked to stop."""

    def __init__(self, buffer: int) -> None:
        self.left = buffer
        self.stopped = False
        self._changed = asyncio.Event()

    async def listen(self, port: ReceivePort[Any]) -> None:
        async for message in port:
            if message is None:
                self.stopped = True
            else:
                self.left += message
            self._changed.set()
            if self.stopped:
                return

    async def take(self) -> bool:
        """Wait for a credit and spend it; ``False`` once the consumer has stopped."""
        while self.left <= 0 and not self.stopped:
            self._changed.clear()
            await self._changed.wait()
        self.left -= 1
        return not self.stopped


async def produce(items: SendPort[Any], work: Encoded, buffer: int) -> None:
    """A pool member's stream task: produce, then send the outcome after the items."""
    items.send(await _outcome(items, work, buffer))


async def _outcome(items: SendPort[Any], work: Encoded, buffer: int) -> Any:
    """Produce; ``("done",)`` or ``("error", encoded error)``, for the consumer to end on."""
    try:
        await _produce(items, work, buffer)
    except Exception as error:
        return ("error", encode(_portable(error), "Isolate.stream() raising"))
    return ("done",)


async def _produce(items: SendPort[Any], work: Encoded, buffer: int) -> None:
    """Run the generator ``work`` encodes, sending its items to ``items`` as credits allow.

    Returns when the generator is exhausted or the consumer stopped; raises
    what the generator raised.
    """
    credit_port: ReceivePort[Any] = ReceivePort("stream-credits")
    items.send(("ready", credit_port.send_port))
    credits = _Credits(buffer)
    listener = asyncio.ensure_future(credits.listen(credit_port))
    try:
        fn, args = await open_encoded_async(work)
        source = fn(*args)
        if inspect.isasyncgen(source):
            await _pump_async(source, items, credits)
        elif isinstance(source, Iterator):
            await _pump_sync(source, items, credits)
        else:
            name = getattr(fn, "__qualname__", repr(fn))
            raise TypeError(
                f"Isolate.stream() needs a generator function (or one returning an "
                f"iterator); {name} returned {type(source).__name__}"
            )
    finally:
        listener.cancel()
        credit_port.close()


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


async def stream_isolate(setup: tuple[SendPort[Any], Encoded, int]) -> None:
    """The entry point of a spawned stream isolate: produce, then exit with the outcome."""
    items, work, buffer = setup
    current().exit(items, await _outcome(items, work, buffer))  # before the exit notice


def unsendable_task(action: str, fn: Any, args: tuple[Any, ...]) -> TypeError:
    """The ``TypeError`` for a function or argument that cannot be sent, naming it."""
    part = unsendable_call(fn, args) or "the task"
    return TypeError(f"{action} cannot send {part}; nothing was submitted")


# The consumer --------------------------------------------------------------------------


class IsolateStream(Generic[T]):
    """The items of a generator running in another isolate, as they come.

    An iterator and an async iterator alike. At most ``buffer`` items are
    produced and not yet taken: the producer waits for the consumer.
    ``break``, :meth:`close` / :meth:`aclose` or dropping the stream stops
    the producer (its ``finally`` runs; one stuck in sync code is ended by
    force after a few seconds). An error in the producer is raised after
    the items before it, as its own type with the remote stack; a producer
    that dies gives :class:`RemoteError`.

    Made by ``Isolate.stream`` and ``IsolatePool.stream``.
    """

    __module__ = "rayisolates"

    def __init__(self, what: str, buffer: int) -> None:
        self._what = what
        self._buffer = buffer
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._items: collections.deque[Encoded] = collections.deque()
        self._end: BaseException | None = None  # StopIteration when done
        self._credit_port: SendPort[Any] | None = None
        self._taken = 0  # since credits were last given back
        self._stopping = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._force_end: Callable[[], None] | None = None
        # The port holds the stream weakly, so that dropping the stream stops it.
        self._port: RawReceivePort[Any] = RawReceivePort(_weak_handler(self), "stream")

    @property
    def send_port(self) -> SendPort[Any]:
        """Where the producer sends (internal, for the launchers)."""
        return self._port.send_port

    # Fed by the launcher and the producer ------------------------------------------

    def _on_message(self, message: Any) -> None:
        if message is None:  # the producer's exit notice: after its last message
            self._finish(RemoteError(f"{self._what}: the stream's producer ended", ""))
        elif message[0] == "item":
            with self._lock:
                if not self._stopping:
                    self._items.append(message[1])
                self._wake()
        elif message[0] == "ready":
            with self._lock:
                self._credit_port = message[1]
                stop = self._stopping
            if stop:
                message[1].send(None)
        elif message[0] == "done":
            self._finish(StopIteration())
        else:
            try:
                error: BaseException = open_encoded(message[1])
            except Exception as failure:
                error = RemoteError(f"{self._what} failed: {failure}", "")
            self._finish(error)

    def _started(self, force_end: Callable[[], None]) -> None:
        """The launcher's way to end the producer by force."""
        with self._lock:
            self._force_end = force_end
            stopping = self._stopping and self._end is None
        if stopping:
            later(STOP_GRACE_SECONDS, self._end_by_force)

    def _finish(self, end: BaseException) -> None:
        """The producer is done (``StopIteration``) or failed; first word wins."""
        with self._lock:
            if self._end is not None:
                return
            self._end = end
            self._wake()
        self._port.close()

    def _wake(self) -> None:
        self._arrived.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_set_done, waiter)

    # Taking items ----------------------------------------------------------------------

    def _pop(self) -> tuple[Encoded, int] | None:
        """The next item and the credits to give back for it, if one is here (under the
        lock); raises the end after the items."""
        if self._items:
            item = self._items.popleft()
            self._taken += 1
            credits = 0
            if self._taken >= max(1, self._buffer // 4) and self._credit_port is not None:
                credits, self._taken = self._taken, 0
            return item, credits
        if self._end is not None:
            raise self._end if not isinstance(self._end, StopIteration) else StopIteration
        if self._stopping:
            raise StopIteration
        return None

    def _give_back(self, credits: int) -> None:
        """Send credits to the producer (after the lock: nothing waits on it meanwhile)."""
        if credits:
            assert self._credit_port is not None
            self._credit_port.send(credits)

    def __next__(self) -> T:
        with self._lock:
            while (taken := self._pop()) is None:
                self._arrived.wait()
        item, credits = taken
        self._give_back(credits)
        value: T = open_encoded(item)
        return value

    async def __anext__(self) -> T:
        while True:
            with self._lock:
                try:
                    taken = self._pop()
                except StopIteration:
                    raise StopAsyncIteration from None
                if taken is None:
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append((asyncio.get_running_loop(), waiter))
            if taken is not None:
                item, credits = taken
                self._give_back(credits)
                value: T = await open_encoded_async(item)
                return value
            await waiter

    def __iter__(self) -> Iterator[T]:
        """Items one by one; leaving the loop early (``break``) stops the producer."""
        try:
            while True:
                try:
                    yield next(self)
                except StopIteration:
                    return
        finally:
            self._stop()

    async def __aiter__(self) -> AsyncIterator[T]:
        """:meth:`__iter__` for ``async for``."""
        try:
            while True:
                try:
                    yield await self.__anext__()
                except StopAsyncIteration:
                    return
        finally:
            self._stop()

    # Stopping --------------------------------------------------------------------------

    def _stop(self) -> None:
        """Ask the producer to stop, without waiting; force it after the grace period."""
        with self._lock:
            if self._stopping or self._end is not None:
                return
            self._stopping = True
            self._items.clear()
            credit_port, force = self._credit_port, self._force_end
            self._wake()
        if credit_port is not None:
            credit_port.send(None)
        if force is not None:
            later(STOP_GRACE_SECONDS, self._end_by_force)

    def _end_by_force(self) -> None:
        with self._lock:
            if self._end is not None or self._force_end is None:
                return
            force = self._force_end
        self._finish(StopIteration())  # first: what forcing reports is not the stream's end
        force()

    def close(self, timeout: float | None = STOP_GRACE_SECONDS + 5) -> None:
        """Stop the producer and wait until it has finished (or been ended by force).

        Raises:
            RuntimeError: Called inside a running event loop (use ``aclose``).
        """
        if asyncio._get_running_loop() is not None:
            raise RuntimeError(
                "IsolateStream.close() waits for the producer and would block this event "
                "loop; use `await stream.aclose()` here"
            )
        self._stop()
        with self._lock:
            self._arrived.wait_for(lambda: self._end is not None, timeout)

    async def aclose(self) -> None:
        """:meth:`close`, awaitable."""
        self._stop()
        while True:
            with self._lock:
                if self._end is not None or self._force_end is None:
                    return
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append((asyncio.get_running_loop(), waiter))
            await waiter

    def __del__(self) -> None:
        """Dropped before it ended: stop the producer, and end it by force after the grace
        period unless it has finished (forcing one that finished does nothing)."""
        try:
            if self._end is None and not self._stopping:
                if self._credit_port is not None:
                    self._credit_port.send(None)
                if self._force_end is not None:
                    later(STOP_GRACE_SECONDS, self._force_end)
            self._port.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "ended" if self._end is not None else "stopping" if self._stopping else "open"
        return f"<IsolateStream {self._what} {state}, {len(self._items)} items here>"


def _weak_handler(stream: IsolateStream[Any]) -> Callable[[Any], None]:
    reference = weakref.ref(stream)

    def handle(message: Any) -> None:
        alive = reference()
        if alive is not None:
            alive._on_message(message)

    return handle


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# Launching -------------------------------------------------------------------------------


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
        raise unsendable_task(action, fn, args) from None


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
