"""The sending half of an isolate: one ordered, batching channel per destination.

Sending a message must not cost a Ray call. Messages an isolate sends to one
destination isolate are appended to that destination's channel. A message to
an idle destination (nothing in flight) leaves at once, from the sending
thread, so a lone message is never delayed, not even by a sender that blocks
right after sending. Messages sent while a batch is in flight gather and
leave together at the end of the event-loop turn, as one ``deliver`` call;
while ``MAX_IN_FLIGHT`` batches are unacknowledged they wait for the next
acknowledgement, so a fast sender gets larger batches instead of more calls.

Ray may run calls from one caller out of order, so every batch carries the
channel's next sequence number and the receiver puts batches back in order
(see ``_inbox``). A batch is acknowledged when ``deliver`` returns, which the
receiver does only once it holds everything in it (objects fetched).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from ._codec import Item

__all__ = ["MAX_IN_FLIGHT", "Outbox"]

MAX_IN_FLIGHT = 2

# deliver(sender_id, seq, items) for the sending isolate's own ports
LocalDelivery = Callable[[str, int, list[Item]], None]
# takes a batch (sender_id, seq, items) for a destination instead of a Ray call
Handoff = Callable[[str, int, list[Item]], bool]


class _Channel:
    __slots__ = ("dead", "in_flight", "pending", "route", "scheduled", "seq")

    def __init__(self, route: Any) -> None:
        self.route = route
        self.seq = 0
        self.pending: list[Item] = []
        self.in_flight = 0
        self.scheduled = False
        self.dead = False


class Outbox:
    """Per-destination batching and ordering for everything one isolate sends.

    Args:
        sender_id: Identifies this sender to receivers (one sequence space
            per sender and destination).
        loop: The loop that flushes and takes acknowledgements; ``add`` may
            be called from any thread.
        own_id: This isolate's id; messages to its own ports skip Ray.
        local: Delivers a batch to this isolate's own ports.
        opened: Called with ``(destination, route)`` the first time a
            destination is used.
    """

    def __init__(
        self,
        sender_id: str,
        loop: asyncio.AbstractEventLoop,
        own_id: str | None = None,
        local: LocalDelivery | None = None,
        opened: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.sender_id = sender_id
        self._loop = loop
        self._own_id = own_id
        self._local = local
        self._opened = opened
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._handoffs: dict[str, Handoff] = {}
        self._loop_thread: int | None = None
        self._settled: asyncio.Event | None = None
        loop.call_soon_threadsafe(self._note_loop_thread)

    def _note_loop_thread(self) -> None:
        self._loop_thread = threading.get_ident()

    def add(self, destination: str, route: Any, item: Item) -> None:
        """Queue ``item`` for ``destination``; a flush follows within a loop turn."""
        opened = False
        with self._lock:
            channel = self._channels.get(destination)
            if channel is None:
                channel = self._channels[destination] = _Channel(route)
                opened = True
            if channel.dead:
                return
            channel.pending.append(item)
            if channel.scheduled or channel.in_flight >= MAX_IN_FLIGHT:
                return
            channel.scheduled = True
            now = channel.in_flight == 0
        if opened and self._opened is not None:
            self._opened(destination, route)
        if now:
            self._flush(destination, channel)
        elif threading.get_ident() == self._loop_thread:
            self._loop.call_soon(self._flush, destination, channel)
        else:
            self._loop.call_soon_threadsafe(self._flush, destination, channel)

    def set_handoff(self, destination: str, handoff: Handoff) -> None:
        """Offer batches for ``destination`` to ``handoff`` before making a Ray call.

        A handoff that takes a batch (returns ``True``) must later call
        :meth:`acknowledge` for it. It is called on ``loop``; call :meth:`offer`
        when it becomes ready to take one.
        """
        with self._lock:
            self._handoffs[destination] = handoff

    def offer(self, destination: str) -> None:
        """A handoff for ``destination`` became ready: flush what waits for it."""
        with self._lock:
            channel = self._channels.get(destination)
            if channel is None or not channel.pending or channel.scheduled:
                return
            channel.scheduled = True
        self._flush(destination, channel)

    def busy_towards(self, destination: str) -> bool:
        """Whether messages for ``destination`` are pending or unacknowledged."""
        with self._lock:
            channel = self._channels.get(destination)
            return channel is not None and bool(channel.pending or channel.in_flight)

    def acknowledge(self, destination: str) -> None:
        """A batch taken by a handoff has been received (call on ``loop``)."""
        channel = self._channels.get(destination)
        if channel is not None:
            self._acknowledged(destination, channel, None)

    def _flush(self, destination: str, channel: _Channel) -> None:
        with self._lock:
            channel.scheduled = False
            if not channel.pending or channel.in_flight >= MAX_IN_FLIGHT or channel.dead:
                return
            items, channel.pending = channel.pending, []
            seq = channel.seq
            channel.seq += 1
            channel.in_flight += 1
            handoff = self._handoffs.get(destination)
        if destination == self._own_id and self._local is not None:
            self._local(self.sender_id, seq, items)
            self._loop.call_soon_threadsafe(self._acknowledged, destination, channel, None)
            return
        if handoff is not None and handoff(self.sender_id, seq, items):
            return
        reference = channel.route.deliver.remote(self.sender_id, seq, items)
        reference.future().add_done_callback(
            lambda done: self._loop.call_soon_threadsafe(
                self._acknowledged, destination, channel, done.exception()
            )
        )

    def _acknowledged(
        self, destination: str, channel: _Channel, error: BaseException | None
    ) -> None:
        from ray import exceptions as ray_errors

        with self._lock:
            channel.in_flight -= 1
            if isinstance(error, ray_errors.RayActorError):
                # The destination isolate is gone: what is sent to it is dropped, as in Dart.
                channel.dead = True
                channel.pending.clear()
            again = bool(channel.pending) and not channel.scheduled and not channel.dead
            if again:
                channel.scheduled = True
        if again:
            self._flush(destination, channel)
        if self._settled is not None:
            self._settled.set()

    def _busy(self) -> bool:
        with self._lock:
            return any(
                (channel.pending or channel.in_flight) and not channel.dead
                for channel in self._channels.values()
            )

    async def drain(self) -> None:
        """Wait, on the outbox's loop, until everything sent so far is acknowledged."""
        if self._settled is None:
            self._settled = asyncio.Event()
        while self._busy():
            self._settled.clear()
            with self._lock:
                stalled = [
                    (destination, channel)
                    for destination, channel in self._channels.items()
                    if channel.pending and not channel.scheduled and not channel.in_flight
                ]
                for _, channel in stalled:
                    channel.scheduled = True
            for destination, channel in stalled:
                self._flush(destination, channel)
            await self._settled.wait()

    def forget(self, destination: str) -> None:
        """Drop the channel to an isolate known to have ended."""
        with self._lock:
            channel = self._channels.pop(destination, None)
            self._handoffs.pop(destination, None)
            if channel is not None:
                channel.dead = True
