"""The sending half of an isolate: one ordered, batching, retrying channel per destination.

Sending a message must not cost a Ray call. What one sender sends to one
destination is appended to that destination's channel. While fewer than
``window`` batches to it are in flight, what is pending leaves at once, from
the sending thread, so a lone message is never delayed; otherwise messages
gather, and each completed call sends all that gathered as one batch. A fast
sender so gets larger batches rather than more calls. Nothing here waits for
an event loop: a sender busy in a long synchronous computation still gets
its messages out (completions come on the transport's own completions
thread, or a direct channel's reading thread).

The call is whatever ``transmit`` makes of a batch: a write on a direct
channel on the same node, or a Ray actor call (``direct.direct_first``
chooses). Each batch carries the channel's next sequence number; the
receiver puts batches back in order and drops duplicates (``inbox``). So a
call that fails with "may or may not have been executed" is simply made
again, with the same batch and number, until it is delivered or the
destination is known dead (``rpc.outcome``). A dead destination drops what
is queued for it, as Dart drops messages to a closed port.

Channel states, per destination::

    idle --add--> sending --all delivered--> idle
                   |  ^
          unavailable  retry after backoff (same seq)
                   v  |
                 retrying
    any --actor died--> dead (drops pending; later adds are dropped)

The Ray call itself is a parameter (``transmit``), so tests drive this
without Ray.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .rpc import DEAD, RAISED, RETRY, OnDone, backoff, later, outcome, when_done

__all__ = ["MAX_IN_FLIGHT", "Outbox", "Transmit"]

log = logging.getLogger("rayisolates.outbox")

MAX_IN_FLIGHT = 2

T = TypeVar("T")

# transmit(destination, route, sender, seq, batch) -> the call's future
Transmit = Callable[[str, Any, str, int, list[Any]], concurrent.futures.Future[Any]]
Later = Callable[[float, Callable[[], None]], None]


class _Channel(Generic[T]):
    __slots__ = ("dead", "in_flight", "pending", "route", "seq")

    def __init__(self, route: Any) -> None:
        self.route = route
        self.seq = 0
        self.pending: list[T] = []
        self.in_flight: dict[int, list[T]] = {}
        self.dead = False


class Outbox(Generic[T]):
    """Per-destination batching, ordering and retrying for everything one sender sends.

    Thread-safe: :meth:`add` may be called from any thread; completions are
    handled on whatever thread completes the call's future.

    Args:
        sender_id: Identifies this sender to receivers (one sequence space
            per sender and destination).
        transmit: Makes one call carrying one batch; see :data:`Transmit`.
        window: How many batches to one destination may be in flight.
        schedule: Runs a callback after a delay (retries back off).
        on_done: Runs a callback once a call's future is done (off Ray's thread).
    """

    def __init__(
        self,
        sender_id: str,
        transmit: Transmit,
        *,
        window: int = MAX_IN_FLIGHT,
        schedule: Later = later,
        on_done: OnDone = when_done,
    ) -> None:
        self.sender_id = sender_id
        self._transmit = transmit
        self._window = window
        self._schedule = schedule
        self._on_done = on_done
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel[T]] = {}
        self._watchers: set[Callable[[], None]] = set()
        self.added = 0  # items added so far, under the lock (dropped ones too)

    def add(self, destination: str, route: Any, item: T) -> None:
        """Queue ``item`` for ``destination``; it leaves now or when a batch completes."""
        with self._lock:
            self.added += 1
            channel = self._channels.get(destination)
            if channel is None:
                channel = self._channels[destination] = _Channel(route)
            if channel.dead:
                return
            channel.pending.append(item)
            batch = self._next_batch(channel)
        if batch is not None:
            self._send(destination, channel, *batch, attempt=1)

    def _next_batch(self, channel: _Channel[T]) -> tuple[int, list[T]] | None:
        """Under the lock: the next batch to send, if the window allows one."""
        if not channel.pending or len(channel.in_flight) >= self._window or channel.dead:
            return None
        batch, channel.pending = channel.pending, []
        seq = channel.seq
        channel.seq += 1
        channel.in_flight[seq] = batch
        return seq, batch

    def _send(
        self, destination: str, channel: _Channel[T], seq: int, batch: list[T], attempt: int
    ) -> None:
        try:
            future = self._transmit(destination, channel.route, self.sender_id, seq, batch)
        except Exception as error:  # Ray is gone (shutdown): nothing can be delivered
            self._completed(destination, channel, seq, batch, attempt, error)
            return
        self._on_done(
            future,
            lambda done: self._completed(
                destination,
                channel,
                seq,
                batch,
                attempt,
                None if done.cancelled() else done.exception(),
            ),
        )

    def _retry(
        self, destination: str, channel: _Channel[T], seq: int, batch: list[T], attempt: int
    ) -> None:
        if not channel.dead:  # found dead (or forgotten) while the retry waited
            self._send(destination, channel, seq, batch, attempt)

    def _completed(
        self,
        destination: str,
        channel: _Channel[T],
        seq: int,
        batch: list[T],
        attempt: int,
        error: BaseException | None,
    ) -> None:
        result = outcome(error)
        if result == RETRY and not channel.dead:
            self._schedule(
                backoff(attempt + 1),
                lambda: self._retry(destination, channel, seq, batch, attempt + 1),
            )
            return
        if result == RAISED:
            log.error(
                "rayisolates: delivering to %s failed: %r; %d message(s) dropped",
                destination,
                error,
                len(batch),
            )
        with self._lock:
            channel.in_flight.pop(seq, None)
            if result == DEAD:
                channel.dead = True
                channel.pending.clear()
                channel.in_flight.clear()
            following = self._next_batch(channel)
            watchers = list(self._watchers)
        if following is not None:
            self._send(destination, channel, *following, attempt=1)
        for wake in watchers:
            wake()

    def busy(self) -> bool:
        """Whether anything sent so far is still queued or in flight to a live destination."""
        with self._lock:
            return any(
                (channel.pending or channel.in_flight) and not channel.dead
                for channel in self._channels.values()
            )

    async def drain(self) -> None:
        """Wait until everything sent so far is delivered (or its destination is dead)."""
        loop = asyncio.get_running_loop()
        settled = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(settled.set)

        with self._lock:
            self._watchers.add(wake)
        try:
            while self.busy():
                settled.clear()
                await settled.wait()
        finally:
            with self._lock:
                self._watchers.discard(wake)

    def forget(self, destination: str) -> None:
        """Drop the channel to a destination that has ended."""
        with self._lock:
            channel = self._channels.pop(destination, None)
            if channel is not None:
                channel.dead = True
                channel.pending.clear()

    def destinations(self) -> int:
        """How many channels this outbox keeps."""
        with self._lock:
            return len(self._channels)
