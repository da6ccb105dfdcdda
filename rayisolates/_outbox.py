"""The sending half of an isolate: one ordered, batching channel per destination.

Sending a message must not cost a Ray call. Messages an isolate sends to one
destination isolate are appended to that destination's channel. While fewer
than ``MAX_IN_FLIGHT`` batches to it are unacknowledged, what is pending
leaves at once, from the sending thread, so a lone message is never delayed;
otherwise messages gather, and every acknowledgement sends all that gathered
as one ``deliver`` call. A fast sender so gets larger batches rather than
more calls. Nothing here waits for the sender's event loop: an isolate busy
in a long synchronous computation still gets its messages out.

Ray may run calls from one caller out of order, so every batch carries the
channel's next sequence number and the receiver puts batches back in order
(see ``_inbox``). A batch is acknowledged when ``deliver`` returns, which the
receiver does only once it holds everything in it (objects fetched).

Two hooks serve the main isolate, which the driver runs: ``confirming``
adds to each ``deliver`` how far the sender has received the destination's
own batches, and ``replied`` takes the batches a ``deliver`` returns (an
isolate answers the main isolate in the reply to its call when it can).
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
# how far this isolate has received a destination's batches, to tell it (or None)
Confirming = Callable[[str], int | None]
# batches a destination returned from deliver: (destination, [(sender, seq, items), ...])
Replied = Callable[[str, list[tuple[str, int, list[Item]]]], None]


class _Channel:
    __slots__ = ("dead", "in_flight", "pending", "route", "seq")

    def __init__(self, route: Any) -> None:
        self.route = route
        self.seq = 0
        self.pending: list[Item] = []
        self.in_flight = 0
        self.dead = False


class Outbox:
    """Per-destination batching and ordering for everything one isolate sends.

    Thread-safe: ``add`` may be called from any thread, and acknowledgements
    are handled on Ray's callback thread.

    Args:
        sender_id: Identifies this sender to receivers (one sequence space
            per sender and destination).
        loop: The loop :meth:`drain` runs on.
        own_id: This isolate's id; messages to its own ports skip Ray.
        local: Delivers a batch to this isolate's own ports.
        opened: Called with ``(destination, route)`` the first time a
            destination is used.
        confirming: See the module docstring.
        replied: See the module docstring.
    """

    def __init__(
        self,
        sender_id: str,
        loop: asyncio.AbstractEventLoop,
        own_id: str | None = None,
        local: LocalDelivery | None = None,
        opened: Callable[[str, Any], None] | None = None,
        confirming: Confirming | None = None,
        replied: Replied | None = None,
    ) -> None:
        self.sender_id = sender_id
        self._loop = loop
        self._own_id = own_id
        self._local = local
        self._opened = opened
        self._confirming = confirming
        self._replied = replied
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._handoffs: dict[str, Handoff] = {}
        self._held: set[str] = set()
        self._settled: asyncio.Event | None = None

    def add(self, destination: str, route: Any, item: Item) -> None:
        """Queue ``item`` for ``destination``; it leaves now or with the next acknowledgement."""
        opened = False
        with self._lock:
            channel = self._channels.get(destination)
            if channel is None:
                channel = self._channels[destination] = _Channel(route)
                opened = True
            if channel.dead:
                return
            channel.pending.append(item)
            batch = self._take(destination, channel)
        if opened and self._opened is not None:
            self._opened(destination, route)
        if batch is not None:
            self._send(destination, channel, *batch)

    def _take(
        self, destination: str, channel: _Channel
    ) -> tuple[int, list[Item], Handoff | None] | None:
        """Under the lock: the next batch to send, if the window allows one."""
        if (
            not channel.pending
            or channel.in_flight >= MAX_IN_FLIGHT
            or channel.dead
            or destination in self._held
        ):
            return None
        items, channel.pending = channel.pending, []
        seq = channel.seq
        channel.seq += 1
        channel.in_flight += 1
        return seq, items, self._handoffs.get(destination)

    def _send(
        self,
        destination: str,
        channel: _Channel,
        seq: int,
        items: list[Item],
        handoff: Handoff | None,
    ) -> None:
        if destination == self._own_id and self._local is not None:
            self._local(self.sender_id, seq, items)
            self._acknowledged(destination, channel, None)
            return
        if handoff is not None and handoff(self.sender_id, seq, items):
            return
        received = None if self._confirming is None else self._confirming(destination)
        if received is None:
            reference = channel.route.deliver.remote(self.sender_id, seq, items)
        else:
            reference = channel.route.deliver.remote(self.sender_id, seq, items, received)
        reference.future().add_done_callback(
            lambda done: self._delivered(destination, channel, done)
        )

    def _delivered(self, destination: str, channel: _Channel, done: Any) -> None:
        error = done.exception()
        if error is None and self._replied is not None:
            replies = done.result()
            if replies:
                self._replied(destination, replies)
        self._acknowledged(destination, channel, error)

    def set_handoff(self, destination: str, handoff: Handoff) -> None:
        """Offer batches for ``destination`` to ``handoff`` before making a Ray call.

        A handoff that takes a batch (returns ``True``) must later call
        :meth:`acknowledge` for it; call :meth:`offer` when it becomes ready
        to take one.
        """
        with self._lock:
            self._handoffs[destination] = handoff

    def offer(self, destination: str) -> None:
        """A handoff for ``destination`` became ready: send what waits for it."""
        with self._lock:
            channel = self._channels.get(destination)
            batch = None if channel is None else self._take(destination, channel)
        if batch is not None:
            assert channel is not None
            self._send(destination, channel, *batch)

    def hold(self, destination: str) -> None:
        """Keep what is sent to ``destination`` until :meth:`release`."""
        with self._lock:
            self._held.add(destination)

    def release(self, destination: str) -> tuple[int, list[Item]] | None:
        """Stop holding; return what gathered as one batch, now in flight (or ``None``).

        The caller delivers the batch itself and calls :meth:`acknowledge`.
        """
        with self._lock:
            self._held.discard(destination)
            channel = self._channels.get(destination)
            if channel is None or not channel.pending or channel.dead:
                return None
            items, channel.pending = channel.pending, []
            seq = channel.seq
            channel.seq += 1
            channel.in_flight += 1
            return seq, items

    def busy_towards(self, destination: str) -> bool:
        """Whether messages for ``destination`` are pending or unacknowledged."""
        with self._lock:
            channel = self._channels.get(destination)
            return channel is not None and bool(channel.pending or channel.in_flight)

    def acknowledge(self, destination: str) -> None:
        """A batch taken by a handoff has been received."""
        channel = self._channels.get(destination)
        if channel is not None:
            self._acknowledged(destination, channel, None)

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
            batch = self._take(destination, channel)
            settled = self._settled
        if batch is not None:
            self._send(destination, channel, *batch)
        if settled is not None:
            self._loop.call_soon_threadsafe(settled.set)

    def _busy(self) -> bool:
        with self._lock:
            return any(
                (channel.pending or channel.in_flight) and not channel.dead
                for channel in self._channels.values()
            )

    async def drain(self) -> None:
        """Wait, on the outbox's loop, until everything sent so far is acknowledged."""
        settled = asyncio.Event()
        with self._lock:
            self._settled = settled
        try:
            while self._busy():
                settled.clear()
                await settled.wait()
        finally:
            with self._lock:
                self._settled = None

    def forget(self, destination: str) -> None:
        """Drop the channel to an isolate known to have ended."""
        with self._lock:
            channel = self._channels.pop(destination, None)
            self._handoffs.pop(destination, None)
            if channel is not None:
                channel.dead = True
