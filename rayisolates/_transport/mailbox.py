"""A port's mailbox: messages queued by the transport, taken by one consumer loop, in order.

The receiver puts messages here under its own lock, from whichever thread
took their batch (in the main isolate: a direct channel's reading thread,
the completions thread, the background loop), and only queues them. It
hands over after releasing that lock: on the port's own loop the mailbox
drains at once, anywhere else it schedules a drain there. So a consumer
(user code) never runs under a lock of the transport, and every message is
taken from the one queue, on the consumer loop, one at a time, by whichever
consumer is current at that moment. Arrival order holds whatever happens
meanwhile: a handler set, replaced or cleared from another thread, a
listener attached, an iterator moving to a new event loop.

States::

    unbound --bind(loop)--> bound(loop) --bind(other)--> bound(other)
       |                       |
       +------- close() -------+--> closed: put() refuses; what is queued stays

Messages queue in every state but closed. A drain runs only on the bound
loop (a drain scheduled on a loop the mailbox has since left does nothing),
and never inside another drain: a consumer that causes a delivery on its
own loop finds the message queued behind the ones already waiting.

When the bound loop has closed, handlers move to a home loop (the
isolate's own); what arrived in the moment the old loop was closing, with
a drain scheduled there that never ran, goes with the next message.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Mailbox"]

T = TypeVar("T")


class Mailbox(Generic[T]):
    """An ordered hand-over of messages to whichever consumer is current on one loop.

    Args:
        consumer: Called on the consumer loop before each message; returns
            the function that takes the next message, or ``None`` to leave
            the rest queued (nobody is listening, or the port is iterated).
        run: Calls a consumer with one message (the isolate's guard that
            turns what it raises into an uncaught error).
        waiting: Called on the consumer loop after a drain that left
            messages queued (so an iterator waiting for one can wake).
        home: Where to consume once the bound loop has closed (a handler set
            inside ``asyncio.run`` outlives its loop), or ``None`` to keep
            messages until the next :meth:`bind`.
    """

    def __init__(
        self,
        consumer: Callable[[], Callable[[T], object] | None],
        run: Callable[[Callable[[T], object], T], None],
        waiting: Callable[[], None] = lambda: None,
        home: Callable[[], asyncio.AbstractEventLoop | None] = lambda: None,
    ) -> None:
        self._consumer = consumer
        self._run = run
        self._waiting = waiting
        self._home = home
        self._lock = threading.Lock()
        self._queue: deque[T] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False  # a drain is queued on self._loop
        self._draining = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop consumers run on, once bound."""
        return self._loop

    def put(self, messages: list[T]) -> bool:
        """Queue ``messages`` (any thread); False once closed. Nothing is consumed here:
        :meth:`hand_over` does that, once the caller holds no lock of its own."""
        with self._lock:
            if self._closed:
                return False
            self._queue.extend(messages)
            return True

    def hand_over(self) -> None:
        """Get what is queued to the consumer: now on the bound loop, else soon there."""
        loop = self._loop
        if loop is not None and asyncio._get_running_loop() is loop:
            self.drain()
        else:
            self.wake()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Consume on ``loop`` from now on; what is queued goes there first."""
        with self._lock:
            if self._loop is loop:
                return
            self._loop = loop
            self._scheduled = False  # one scheduled on the old loop does nothing now
        self.wake()

    def wake(self) -> None:
        """Make sure a drain runs soon on the bound loop (the consumer may have changed)."""
        with self._lock:
            loop = self._loop
            if loop is None or (self._scheduled and not loop.is_closed()):
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._scheduled_drain, loop)
        except RuntimeError:  # that loop has closed: go home, or keep all for the next bind
            with self._lock:
                if self._loop is not loop:
                    return
                home = self._home()
                self._loop = None if home is loop else home
                self._scheduled = False
            if home is not None and home is not loop:
                self.wake()

    def _scheduled_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._loop is not loop:
                return
            self._scheduled = False
        self.drain()

    def drain(self) -> None:
        """Hand queued messages, oldest first, to the current consumer; on the bound loop."""
        running = asyncio._get_running_loop()
        if self._draining or running is not self._loop:
            return
        self._draining = True
        try:
            while (consumer := self._consumer()) is not None:
                with self._lock:
                    if not self._queue or self._loop is not running:
                        return
                    message = self._queue.popleft()
                self._run(consumer, message)
        finally:
            self._draining = False
            if self._queue:
                self._waiting()

    def pop(self) -> tuple[bool, T | None]:
        """The oldest queued message as ``(True, message)``, or ``(False, None)``."""
        with self._lock:
            if self._queue:
                return True, self._queue.popleft()
        return False, None

    def close(self) -> bool:
        """Refuse further messages; True the first time. What is queued stays."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            return True

    def clear(self) -> None:
        """Drop whatever is queued."""
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)
