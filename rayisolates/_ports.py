"""Receive ports: ``ReceivePort`` and ``RawReceivePort``, the mailboxes of an isolate.

A receive port belongs to the isolate that created it and is consumed on an
asyncio event loop of that isolate: in a spawned isolate, its own loop; in the
main isolate, the loop that first iterates or listens to it (or, for
``listen`` outside any loop, the main isolate's background loop). The
transport queues a port's messages in its mailbox (``_mailbox``), from
whichever thread received them, and the mailbox hands them to the port's
consumer on that loop, in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

from ._context.context import current
from ._sendport import SendPort
from ._transport.mailbox import Mailbox

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RawReceivePort", "ReceivePort", "SendPort"]  # SendPort re-exported

T = TypeVar("T")


class _Port(Generic[T]):
    """What both receive ports share: registration, the mailbox, closing."""

    def __init__(self, debug_name: str | None, keep_alive: bool) -> None:
        self.debug_name = debug_name
        self._context = current()
        self._mailbox: Mailbox[T] = Mailbox(
            self._consumer, self._context.guarded, self._waiting, self._home
        )
        port_id = self._context.open_port(self._mailbox, keep_alive)
        self._send_port: SendPort[T] = SendPort(
            self._context.isolate_id, port_id, self._context.route
        )

    @property
    def send_port(self) -> SendPort[T]:
        """The address other isolates use to send to this port."""
        return self._send_port

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"a {type(self).__name__} cannot be sent to another isolate; send its send_port"
        )

    def _consumer(self) -> Callable[[T], object] | None:
        """Who takes the next message now, if anyone (see :class:`Mailbox`)."""
        raise NotImplementedError

    def _waiting(self) -> None:
        """Messages are queued that no consumer took."""

    def _home(self) -> asyncio.AbstractEventLoop | None:
        """Where callbacks run once the loop they were set on has closed."""
        return self._context.loop

    def _finish(self) -> None:
        """Called once, on the port's loop, after closing."""

    def close(self) -> None:
        """Close the port: no more messages arrive; idempotent.

        Messages already received stay available to a reader; then iteration
        ends and ``on_done`` runs.
        """
        if not self._mailbox.close():
            return
        self._context.close_port(self._send_port.port_id)
        loop = self._mailbox.loop
        if loop is not None:  # after the drain under way, if close came from a consumer
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._finish)

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._mailbox.closed

    @property
    def _closed(self) -> bool:
        return self._mailbox.closed


class ReceivePort(_Port[T]):
    """A mailbox: an async stream of the messages sent to its :attr:`send_port`.

    Read it with ``async for message in port``, ``await anext(port)``, or
    ``listen(on_data, on_done)``; a port can be read in one of these ways
    only (it is a single-subscription stream, as in Dart). Messages that
    arrive before anyone reads are kept. While open, the port keeps its
    isolate alive. ``with`` and ``async with`` close it on exit.

    Differences from Dart: ``listen`` returns nothing; :meth:`close` ends it.
    """

    __module__ = "rayisolates"

    def __init__(self, debug_name: str | None = None) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._on_data: Callable[[T], object] | None = None
        self._on_done: Callable[[], object] | None = None
        self._subscribed = False
        super().__init__(debug_name, keep_alive=True)

    def _subscribe(self, how: str) -> None:
        if self._subscribed and how == "listen":
            raise RuntimeError("this ReceivePort is already being read; a port has one reader")
        if self._on_data is not None:
            raise RuntimeError(f"this ReceivePort is already listened to; cannot {how} it too")
        self._subscribed = True

    def __aiter__(self) -> ReceivePort[T]:
        self._subscribe("iterate")
        return self

    async def __anext__(self) -> T:
        if self._on_data is not None:
            raise RuntimeError("this ReceivePort is already listened to; cannot iterate it too")
        self._subscribed = True
        loop = asyncio.get_running_loop()
        self._mailbox.bind(loop)
        while True:
            found, message = self._mailbox.pop()
            if found:
                return message  # type: ignore[return-value]  # found: a T
            if self._closed:
                raise StopAsyncIteration
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def listen(
        self, on_data: Callable[[T], object], on_done: Callable[[], object] | None = None
    ) -> None:
        """Call ``on_data(message)`` for each message, then ``on_done()`` after :meth:`close`.

        Callbacks run on this isolate's event loop (in the main isolate: the
        running loop, or the main isolate's background loop when there is
        none). An exception in a callback is an uncaught error of the isolate.

        Raises:
            RuntimeError: The port is already being read.
        """
        self._subscribe("listen")
        self._on_data, self._on_done = on_data, on_done
        self._mailbox.bind(self._context.consumer_loop())
        self._mailbox.wake()
        loop = self._mailbox.loop
        if self._closed and loop is not None:
            loop.call_soon_threadsafe(self._finish)

    def _consumer(self) -> Callable[[T], object] | None:
        return self._on_data

    def _home(self) -> asyncio.AbstractEventLoop | None:
        return super()._home() if self._on_data is not None else None  # else: the next reader

    def _waiting(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        self._mailbox.drain()  # a listener gets what was received before close
        self._waiting()
        if self._on_done is not None:
            on_done, self._on_done = self._on_done, None
            self._context.guarded(on_done)

    def __enter__(self) -> ReceivePort[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> ReceivePort[T]:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        name = f" {self.debug_name!r}" if self.debug_name else ""
        state = "closed" if self._closed else "open"
        return f"<ReceivePort{name} {self._send_port.port_id} {state}>"


class RawReceivePort(_Port[T]):
    """A port whose messages go straight to a handler on the isolate's event loop.

    ``handler`` can be set or replaced at any time; messages that arrive while
    it is ``None`` are kept until one is set. While open and
    :attr:`keep_isolate_alive` is true (the default), the port keeps its
    isolate alive.

    Differences from Dart: messages arriving with no handler are kept, not
    reported as errors.
    """

    __module__ = "rayisolates"

    def __init__(
        self, handler: Callable[[T], object] | None = None, debug_name: str | None = None
    ) -> None:
        self._handler = handler
        self._keep_alive = True
        super().__init__(debug_name, keep_alive=True)
        self._mailbox.bind(self._context.consumer_loop())

    @property
    def handler(self) -> Callable[[T], object] | None:
        """The function called with each message."""
        return self._handler

    @handler.setter
    def handler(self, handler: Callable[[T], object] | None) -> None:
        self._handler = handler
        if handler is not None:
            self._mailbox.wake()

    @property
    def keep_isolate_alive(self) -> bool:
        """Whether this open port keeps its isolate from exiting."""
        return self._keep_alive

    @keep_isolate_alive.setter
    def keep_isolate_alive(self, keep: bool) -> None:
        self._keep_alive = keep
        if not self._closed:
            self._context.set_keep_alive(self._send_port.port_id, keep)

    def _consumer(self) -> Callable[[T], object] | None:
        return None if self._closed else self._handler

    def _finish(self) -> None:
        self._mailbox.clear()  # a closed raw port delivers nothing more, as in Dart

    def __repr__(self) -> str:
        name = f" {self.debug_name!r}" if self.debug_name else ""
        state = "closed" if self._closed else "open"
        return f"<RawReceivePort{name} {self._send_port.port_id} {state}>"
