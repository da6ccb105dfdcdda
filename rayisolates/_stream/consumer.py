"""``Isolate.stream``: a generator in another isolate, its items sent back with backpressure.

The producer (``producer.produce``, in a spawned isolate or a pool member)
and the consumer (:class:`IsolateStream`, where the stream was asked for)
talk over two ports::

    producer                                   consumer
       | ("ready", credit port) ------------------> |
       | ("item", encoded item)  x credits -------> |  queued until taken
       | <------------------------------- n         |  n more items taken
       | <------------------------------- None      |  stop (close, break, gc)
       | ("done",) or ("error", encoded error) ---> |  the last message (a spawned
       |                                            |   producer's, by Isolate.exit)

Credits (``credits``) bound what is made and not yet taken by ``buffer``.
Items travel encoded inside the messages; large ones ride the object store
and are opened by the transport on arrival (the producer owns them and may
end before they are taken), small ones when taken. An item that cannot be
rebuilt here fails at its place in the stream.

A stop makes the producer close its generator (its ``finally`` runs) and
finish. A producer stuck in synchronous code cannot read the stop: after
``STOP_GRACE_SECONDS`` the consumer ends it by force (the isolate is
killed; a pool member is ended and replaced). A stream dropped before it
ended stops its producer the same way, from a finalizer that only hands the
work to a thread of ours (it may run inside any code, a send included).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from .._context.waiters import Waiters
from .._errors import RemoteError
from .._ports import RawReceivePort
from .._sendport import SendPort
from .._transport.codec import open_encoded, open_encoded_async
from .._transport.rpc import later, ready_for_finalizers, soon
from .._transport.wire import Encoded
from .credits import Owed

__all__ = ["STOP_GRACE_SECONDS", "IsolateStream"]

T = TypeVar("T")

STOP_GRACE_SECONDS = 3.0  # a stopped producer's time to finish before it is ended by force


class _Producer:
    """How to reach the producer: shared by the stream and its finalizer (which must not
    hold the stream)."""

    def __init__(self) -> None:
        self.credit_port: SendPort[Any] | None = None  # once it is ready
        self.force_end: Callable[[], None] | None = None  # once it has started
        self.ended = False  # its last word came (or it was ended by force)
        self.stopped = False  # told to stop


def _dropped(producer: _Producer, port: RawReceivePort[Any]) -> None:
    """The stream was collected: stop its producer, off the collector's way."""
    soon(lambda: _stop_dropped(producer, port))


def _stop_dropped(producer: _Producer, port: RawReceivePort[Any]) -> None:
    if not producer.ended and not producer.stopped:
        producer.stopped = True
        if producer.credit_port is not None:
            producer.credit_port.send(None)
        force = producer.force_end
        if force is not None:  # forcing one that has finished meanwhile does nothing
            later(STOP_GRACE_SECONDS, force)
    port.close()


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
        self._lock = threading.Lock()
        self._changed = Waiters(self._lock)
        self._items: collections.deque[Encoded] = collections.deque()
        self._end: BaseException | None = None  # StopIteration when done
        self._owed = Owed(buffer)
        self._producer = _Producer()
        # The port holds the stream weakly, so that dropping the stream stops it.
        self._port: RawReceivePort[Any] = RawReceivePort(_weak_handler(self), "stream")
        ready_for_finalizers()
        weakref.finalize(self, _dropped, self._producer, self._port)

    @property
    def send_port(self) -> SendPort[Any]:
        """Where the producer sends (for the launchers)."""
        return self._port.send_port

    # Fed by the launcher and the producer ------------------------------------------

    def _on_message(self, message: Any) -> None:
        if message is None:  # the producer's exit notice: after its last message
            self._finish(RemoteError(f"{self._what}: the stream's producer ended", ""))
        elif message[0] == "item":
            with self._lock:
                if not self._producer.stopped:
                    self._items.append(message[1])
                self._changed.wake()
        elif message[0] == "ready":
            with self._lock:
                self._producer.credit_port = message[1]
                stop = self._producer.stopped
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
        """For the launchers (``launch``): the producer has started; ``force_end`` ends it by
        force."""
        with self._lock:
            self._producer.force_end = force_end
            stopping = self._producer.stopped and self._end is None
        if stopping:
            later(STOP_GRACE_SECONDS, self._end_by_force)

    def _finish(self, end: BaseException) -> None:
        """For the launchers and the producer: done (``StopIteration``) or failed (the
        error); the first word wins."""
        with self._lock:
            if self._end is not None:
                return
            self._end = end
            self._producer.ended = True
            self._changed.wake()
        self._port.close()

    # Taking items ----------------------------------------------------------------------

    def _pop(self) -> tuple[Encoded, int] | None:
        """Under the lock: the next item and the credits to give back for it, if one is
        here; raises the end after the items."""
        if self._items:
            return self._items.popleft(), self._owed.took()
        if self._end is not None:
            raise self._end if not isinstance(self._end, StopIteration) else StopIteration
        if self._producer.stopped:
            raise StopIteration
        return None

    def _give_back(self, credits: int) -> None:
        """Send credits to the producer (after the lock: nothing waits on it meanwhile)."""
        if credits:
            credit_port = self._producer.credit_port
            assert credit_port is not None  # the producer says ready before its first item
            credit_port.send(credits)

    def __next__(self) -> T:
        with self._lock:
            taken = self._pop()
            while taken is None:
                self._changed.wait_for(lambda: self._items or self._end or self._producer.stopped)
                taken = self._pop()
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
                    waiter = self._changed.future()
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
            self.stop()

    async def __aiter__(self) -> AsyncIterator[T]:
        """:meth:`__iter__` for ``async for``."""
        try:
            while True:
                try:
                    yield await self.__anext__()
                except StopAsyncIteration:
                    return
        finally:
            self.stop()

    # Stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the producer to stop, without waiting (:meth:`close` waits); idempotent.

        Items not taken yet are dropped. A producer that has not finished
        after ``STOP_GRACE_SECONDS`` is ended by force.
        """
        producer = self._producer
        with self._lock:
            if producer.stopped or self._end is not None:
                return
            producer.stopped = True
            self._items.clear()
            credit_port, force = producer.credit_port, producer.force_end
            self._changed.wake()
        if credit_port is not None:
            credit_port.send(None)
        if force is not None:
            later(STOP_GRACE_SECONDS, self._end_by_force)

    def _end_by_force(self) -> None:
        with self._lock:
            force = self._producer.force_end
            if self._end is not None or force is None:
                return
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
        self.stop()
        with self._lock:
            self._changed.wait_for(lambda: self._end is not None, timeout)

    async def aclose(self) -> None:
        """:meth:`close`, awaitable."""
        self.stop()
        while True:
            with self._lock:
                if self._end is not None or self._producer.force_end is None:
                    return
                waiter = self._changed.future()
            await waiter

    def __repr__(self) -> str:
        stopping = self._producer.stopped
        state = "ended" if self._end is not None else "stopping" if stopping else "open"
        return f"<IsolateStream {self._what} {state}, {len(self._items)} items here>"


def _weak_handler(stream: IsolateStream[Any]) -> Callable[[Any], None]:
    reference = weakref.ref(stream)

    def handle(message: Any) -> None:
        alive = reference()
        if alive is not None:
            alive._on_message(message)

    return handle
