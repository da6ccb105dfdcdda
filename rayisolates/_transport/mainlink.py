"""The link between a spawned isolate and the main isolate (the driver).

Ray actors cannot call a driver, so what an isolate sends to the main isolate
waits in the isolate until the driver comes for it. The driver keeps one
``poll`` call pending on each isolate that talks to it; the poll blocks a
thread of the isolate's actor (not its event loop) until there is something
to hand over. When the driver itself calls the isolate (``deliver`` from
main), the reply to that call also carries what the isolate's handlers sent
back meanwhile, so a request and its answer cost one Ray call, as a raw
actor method does. (An isolate on the driver's node leaves the link for the
driver's direct channel once the link holds nothing unacknowledged: see
``_context.sender``; the link stays the way between nodes.)

Every batch for the main isolate is numbered (one sequence per isolate) and
kept until the driver acknowledges it. Every call from the driver carries
``ack``, the last batch it has received in order, and after a call of its
own failed, ``resend_from``, the first batch it may have lost with that
call's reply. The isolate hands each batch once, and again only when asked
to resend; the driver's inbox drops what it has seen. Nothing waits for an
acknowledgement to make progress: acknowledgements only let the isolate
forget, and let an ending isolate end.

The isolate's side, :class:`HostLink`::

                      add (first, never polled)
      unpolled ----------------------------------> unpolled, PollMe sent
         |                                                |
         | poll arrives                                   | poll arrives
         v                                                v
      polled: a poll waits on the poll thread   <------------------
         |  add          -> the poll answers now, unless a deliver from main
         |                  is collecting (it answers in its reply); the poll
         |                  takes over once REPLY_WINDOW_SECONDS have passed
         |  deliver ends -> its reply carries what was added meanwhile
         v
      ending: the poll answers what is new; with nothing new but batches
         |    unacknowledged, it answers empty every ENDING_POLL_SECONDS,
         |    so that the driver's next poll brings its newest ack
         |  all acknowledged (or CONFIRM_SECONDS passed)
         v
      ended: polls answer LAST_ANSWER; the driver stops polling

The driver's side, :class:`DriverLinks`, per isolate::

      (none) --watch--> polling --answer--> polling (re-poll at once)
                          |  \\--LAST_ANSWER or actor dead--> (none): forgotten
                          \\--unavailable--> polling again after backoff,
                                            with resend_from (its reply is lost)
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .rpc import DEAD, RETRY, OnDone, backoff, later, outcome, soon, when_done
from .wire import LAST_ANSWER, Item, LinkAnswer

__all__ = [
    "CONFIRM_SECONDS",
    "ENDING_POLL_SECONDS",
    "REPLY_WINDOW_SECONDS",
    "DriverLinks",
    "HostLink",
]

log = logging.getLogger("rayisolates.mainlink")

REPLY_WINDOW_SECONDS = 0.002  # how long a deliver from main may keep replies for its own reply
ENDING_POLL_SECONDS = 0.02  # how often an ending isolate's poll comes back for a newer ack
CONFIRM_SECONDS = 30.0  # how long an ending isolate waits for the driver's acknowledgements


class HostLink:
    """The isolate's side of the link: what waits for the driver, and when it leaves.

    Thread-safe: :meth:`add` comes from any thread, :meth:`poll` from the
    actor's poll thread, the rest from the isolate's event loop.

    Args:
        request_poll: Asks the driver to poll this isolate (sends ``PollMe``).
        acknowledged: Called after the driver acknowledged batches (wakes an
            ending isolate waiting in :meth:`drained`).
        reply_window: See ``REPLY_WINDOW_SECONDS``.
        ending_poll: See ``ENDING_POLL_SECONDS``.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        request_poll: Callable[[], None],
        acknowledged: Callable[[], None],
        *,
        reply_window: float = REPLY_WINDOW_SECONDS,
        ending_poll: float = ENDING_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request_poll = request_poll
        self._acknowledged = acknowledged
        self._reply_window = reply_window
        self._ending_poll = ending_poll
        self._clock = clock
        self._changed = threading.Condition()
        self._queue: list[Item] = []
        self._unacked: dict[int, list[Item]] = {}  # in seq order
        self._next_seq = 0
        self._handed = -1  # the last batch handed to the driver (unless asked to resend)
        self._polled = False
        self._poll_requested = False
        self._collecting = 0  # delivers from main that will reply with what is added
        self._collect_deadline = 0.0
        self._ending = False
        self._ended = False
        self.added = 0  # messages added so far, under the lock

    # Any thread --------------------------------------------------------------

    def add(self, item: Item) -> None:
        """Queue one message for the main isolate."""
        with self._changed:
            self.added += 1
            self._queue.append(item)
            request = not self._polled and not self._poll_requested
            self._poll_requested = self._poll_requested or request
            self._changed.notify_all()
        if request:
            self._request_poll()

    # The poll thread -----------------------------------------------------------

    def poll(self, ack: int, resend_from: int | None) -> LinkAnswer:
        """Block until there is something for the driver; return it (see the module doc)."""
        with self._changed:
            self._polled = True
            self._acknowledge(ack, resend_from)
            while True:
                if self._ended:
                    return LAST_ANSWER
                if self._has_new():
                    if self._collecting:
                        remaining = self._collect_deadline - self._clock()
                        if remaining > 0:
                            self._changed.wait(remaining)
                            continue
                    return self._answer()
                if self._ending and self._unacked:
                    if not self._changed.wait(self._ending_poll) and not self._has_new():
                        return LinkAnswer()
                    continue
                self._changed.wait()

    # The isolate's loop -------------------------------------------------------

    def acknowledge(self, ack: int, resend_from: int | None) -> None:
        """What the driver told a deliver: batches received, and what to send again."""
        with self._changed:
            self._acknowledge(ack, resend_from)

    def begin_collecting(self) -> None:
        """A deliver from main starts: keep what is added for its reply, for a while."""
        with self._changed:
            if not self._collecting:
                self._collect_deadline = self._clock() + self._reply_window
            self._collecting += 1

    def end_collecting(self) -> LinkAnswer | None:
        """The deliver ends: what it carries back (``None``: nothing)."""
        with self._changed:
            self._collecting -= 1
            answer = self._answer() if self._has_new() else None
            self._changed.notify_all()
        return answer

    def begin_ending(self) -> None:
        """The isolate ends: polls come back for acknowledgements from now on."""
        with self._changed:
            self._ending = True
            self._changed.notify_all()

    def drained(self) -> bool:
        """Whether everything added has been acknowledged by the driver."""
        with self._changed:
            return not self._queue and not self._unacked

    def end(self) -> None:
        """The isolate has ended: polls answer ``LAST_ANSWER``."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def unacknowledged(self) -> int:
        """How many batches wait for the driver's acknowledgement."""
        with self._changed:
            return len(self._unacked)

    # Under the lock -------------------------------------------------------------

    def _acknowledge(self, ack: int, resend_from: int | None) -> None:
        acknowledged = False
        while self._unacked:
            seq = next(iter(self._unacked))
            if seq > ack:
                break
            del self._unacked[seq]
            acknowledged = True
        if resend_from is not None:
            self._handed = min(self._handed, resend_from - 1)
        if acknowledged:
            self._changed.notify_all()
            self._acknowledged()

    def _has_new(self) -> bool:
        if self._queue:
            return True
        return bool(self._unacked) and next(reversed(self._unacked)) > self._handed

    def _answer(self) -> LinkAnswer:
        if self._queue:
            self._unacked[self._next_seq] = self._queue
            self._next_seq += 1
            self._queue = []
        batches = tuple((seq, items) for seq, items in self._unacked.items() if seq > self._handed)
        if batches:
            self._handed = batches[-1][0]
        return LinkAnswer(batches)


# The driver's side --------------------------------------------------------------

# poll(route, ack, resend_from) -> the call's future (of a LinkAnswer)
Poll = Callable[[Any, int, int | None], concurrent.futures.Future[Any]]


@dataclass(slots=True)
class _Link:
    route: Any
    resend: bool = False  # a reply may have been lost: ask for what we have not received


class DriverLinks:
    """The driver's side: a poll pending on each isolate that talks to the main isolate.

    Thread-safe: calls come from Ray's callback thread and the driver's loops.

    Args:
        received: The last batch of an isolate received in order (-1: none).
        accept: Takes one batch ``(isolate_id, seq, items)`` for the inbox.
        poll: Makes one poll call; see :data:`Poll`.
        forget: Called once an isolate has ended or died: forget its state.
        schedule: Runs a callback after a delay (polls back off after failures).
        on_done: Runs a callback once a poll's future is done (off Ray's thread).
        start: Runs the first poll of an isolate (off Ray's thread: ``watch``
            may be called from there).
    """

    def __init__(
        self,
        received: Callable[[str], int],
        accept: Callable[[str, int, list[Item]], None],
        poll: Poll,
        forget: Callable[[str], None],
        schedule: Callable[[float, Callable[[], None]], None] = later,
        on_done: OnDone = when_done,
        start: Callable[[Callable[[], None]], None] = soon,
    ) -> None:
        self._received = received
        self._accept = accept
        self._poll_call = poll
        self._forget = forget
        self._schedule = schedule
        self._on_done = on_done
        self._start = start
        self._lock = threading.Lock()
        self._links: dict[str, _Link] = {}

    def watch(self, isolate_id: str, route: Any) -> None:
        """Poll ``isolate_id`` from now on, unless that is being done already."""
        with self._lock:
            if isolate_id in self._links:
                return
            link = self._links[isolate_id] = _Link(route)
        self._start(lambda: self._poll(isolate_id, link, attempt=1))

    def arguments(self, isolate_id: str) -> tuple[int, int | None]:
        """``(ack, resend_from)`` for a call to ``isolate_id`` that may carry batches back."""
        received = self._received(isolate_id)
        with self._lock:
            link = self._links.get(isolate_id)
            resend = link is not None and link.resend
            if resend:
                assert link is not None
                link.resend = False
        return received, (received + 1 if resend else None)

    def answered(self, isolate_id: str, answer: LinkAnswer | None) -> None:
        """Take the batches a call to ``isolate_id`` brought back."""
        if answer is not None:
            for seq, items in answer.batches:
                self._accept(isolate_id, seq, items)

    def failed(self, isolate_id: str) -> None:
        """A call to ``isolate_id`` failed: what its reply carried must be asked for again."""
        with self._lock:
            link = self._links.get(isolate_id)
            if link is not None:
                link.resend = True

    def watched(self) -> int:
        """How many isolates are being polled."""
        with self._lock:
            return len(self._links)

    def _poll(self, isolate_id: str, link: _Link, attempt: int) -> None:
        ack, resend_from = self.arguments(isolate_id)
        try:
            future = self._poll_call(link.route, ack, resend_from)
        except Exception:  # Ray is gone: nobody is left to poll
            self._drop(isolate_id)
            return
        self._on_done(future, lambda done: self._polled(isolate_id, link, attempt, done))

    def _polled(
        self, isolate_id: str, link: _Link, attempt: int, done: concurrent.futures.Future[Any]
    ) -> None:
        error = None if done.cancelled() else done.exception()
        result = outcome(error)
        if error is None:
            answer: LinkAnswer = done.result()
            self.answered(isolate_id, answer)
            if answer.last:
                self._drop(isolate_id)
            else:
                self._poll(isolate_id, link, attempt=1)
        elif result == RETRY:
            link.resend = True
            self._schedule(backoff(attempt + 1), lambda: self._poll(isolate_id, link, attempt + 1))
        else:
            if result != DEAD:
                log.error("rayisolates: polling %s failed: %r", isolate_id, error)
            self._drop(isolate_id)

    def _drop(self, isolate_id: str) -> None:
        with self._lock:
            self._links.pop(isolate_id, None)
        self._forget(isolate_id)
