"""An isolate's receiving side: batches decoded, put in order, held while paused, dispatched.

Batches come from four places: the ``deliver`` calls of other isolates,
their direct channels (``_transport.direct``), the isolate's own sends
(``_transport.local``), and, in the main isolate, the poll answers and
replies of ``_transport.mainlink`` and the supervisor's relay. Each goes
through one ``Inbox``, so each sender's messages are dispatched once, in
order. A batch holding stored values is opened on the isolate's loop before
it is put in order (``open_and_accept``). Messages to the control port are
control records that act between events (pause, resume, kill, ping, error
listeners): they travel with the sender's port messages, in the same
sequence, whatever carries them, and act where they stand in it, under the
lock, before what follows is dispatched. So a message sent after ``pause()``
is held until ``resume()``, and one sent before may be overtaken by the
pause only if it is still queued (Dart's out-of-band messages do the same).

No user code runs under the receiver's lock. Under it, a batch is only put
in order and each port's messages queued in that port's mailbox; once the
lock is released, the thread that brought the batch hands the mailboxes
over (``Mailbox.hand_over``: drained at once on the port's own loop,
scheduled there from anywhere else). A handler may so take any lock of its
own, and a thread holding that lock may send and wait for answers, while
this receiver keeps taking batches on other threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from .._capability import Capability
from .._transport.codec import Message, decode, decode_now, needs_fetch
from .._transport.inbox import Inbox
from .._transport.mailbox import Mailbox
from .._transport.wire import CONTROL_PORT, Item
from .porttable import PortTable

__all__ = ["Receiver"]


class Receiver:
    """Orders, holds and dispatches what an isolate receives; thread-safe.

    Args:
        ports: Where messages go.
        loop: Where batches that need the object store are decoded.
        uncaught: Reports an error no code of the isolate can catch (a
            message that cannot be rebuilt here).
        on_control: Acts on a control record sent to the control port, under
            the receiver's lock, where it stands in its sender's sequence. It
            must not run user code or wait; it may pause, resume and stop this
            receiver and send.
    """

    def __init__(
        self,
        ports: PortTable,
        loop: asyncio.AbstractEventLoop,
        uncaught: Callable[[BaseException], None],
        on_control: Callable[[Any], None] | None = None,
    ) -> None:
        self._ports = ports
        self._loop = loop
        self._uncaught = uncaught
        self._on_control = on_control
        # Re-entered only by ``on_control`` (a resume, a stop, a sender forgotten). Never
        # held while a port's consumer runs.
        self._lock = threading.RLock()
        self._dispatching = 0  # thread id of the dispatch under way (0: none)
        self._inbox: Inbox[Message] = Inbox(self._dispatch)
        self._filled: dict[int, Mailbox[Any]] = {}  # mailboxes given messages, to hand over
        self._pauses: set[Capability] = set()
        self._paused_batches: list[list[Message]] = []
        self._stopped = False
        self.received_messages = 0

    # Taking batches ------------------------------------------------------------

    def accept(self, sender: str, seq: int, items: list[Item]) -> None:
        """Take a batch from any thread; decoded now, or on the loop if it needs fetching."""
        if self.is_duplicate(sender, seq):
            return
        if needs_fetch(items):
            asyncio.run_coroutine_threadsafe(self.open_and_accept(sender, seq, items), self._loop)
            return
        try:
            messages = decode_now(items)
        except Exception as error:  # keep the sequence going: a lost batch must not stall it
            self._uncaught(error)
            messages = []
        self._in_order(sender, seq, messages)

    async def open_and_accept(self, sender: str, seq: int, items: list[Item]) -> None:
        """Take a batch; returns once it is decoded (its objects fetched) and in order."""
        if self.is_duplicate(sender, seq):
            return
        try:
            messages = await decode(items)
        except Exception as error:
            self._uncaught(error)
            messages = []
        self._in_order(sender, seq, messages)

    def _in_order(self, sender: str, seq: int, messages: list[Message]) -> None:
        """Put a decoded batch in order and dispatch what is ready."""
        with self._lock:
            outer, self._dispatching = self._dispatching, threading.get_ident()
            try:
                self._inbox.receive(sender, seq, messages)
            finally:
                self._dispatching = outer
            filled = [] if outer else self._take_filled()
        self._hand_over(filled)

    def is_duplicate(self, sender: str, seq: int) -> bool:
        """Whether batch ``seq`` of ``sender`` has arrived before."""
        with self._lock:
            return self._inbox.is_duplicate(sender, seq)

    def received(self, sender: str) -> int:
        """The last of ``sender``'s batches dispatched in order (-1: none)."""
        with self._lock:
            return self._inbox.received(sender)

    def forget(self, sender: str) -> None:
        """Drop what is known of a sender that has ended."""
        with self._lock:
            self._inbox.forget(sender)

    # Pausing and stopping -------------------------------------------------------

    def pause(self, capability: Capability) -> None:
        """Hold port messages until every pause capability is resumed."""
        with self._lock:
            if not self._stopped:
                self._pauses.add(capability)

    def resume(self, capability: Capability) -> bool:
        """Lift one pause; held messages follow in order. Returns whether none is left.

        Called by a control record being dispatched (``on_control``), the held
        messages are queued now and handed over by that dispatch, after the lock.
        """
        with self._lock:
            self._pauses.discard(capability)
            if self._pauses:
                return False
            held, self._paused_batches = self._paused_batches, []
            for messages in held:
                self._queue(messages)
            inside = self._dispatching == threading.get_ident()
            filled = [] if inside else self._take_filled()
        self._hand_over(filled)
        return True

    def held(self) -> int:
        """How many messages a pause holds back now."""
        return sum(len(batch) for batch in list(self._paused_batches))

    @property
    def paused(self) -> bool:
        """Whether a pause holds messages back."""
        return bool(self._pauses)

    def stop(self) -> None:
        """Dispatch nothing more (the isolate is ending)."""
        with self._lock:
            self._stopped = True
            self._paused_batches.clear()

    # Dispatching -------------------------------------------------------------------

    def _take_filled(self) -> list[Mailbox[Any]]:
        """Under the lock: the mailboxes given messages since the last hand-over."""
        if not self._filled:
            return []
        filled = list(self._filled.values())
        self._filled.clear()
        return filled

    @staticmethod
    def _hand_over(filled: list[Mailbox[Any]]) -> None:
        """Outside the lock: get their messages to the ports' consumers."""
        for mailbox in filled:
            mailbox.hand_over()

    def _dispatch(self, messages: list[Message]) -> None:
        """Under the lock: act on control records where they stand, hold while paused,
        queue the rest per port."""
        start = 0
        while start < len(messages) and not self._stopped:
            end = start
            while end < len(messages) and messages[end][0] != CONTROL_PORT:
                end += 1
            if end > start:
                self._queue(messages[start:end] if start or end < len(messages) else messages)
            if end < len(messages):
                if self._on_control is not None:
                    self._on_control(messages[end][1])
                end += 1
            start = end

    def _queue(self, messages: list[Message]) -> None:
        """Under the lock: port messages, held while paused, else queued per port."""
        if self._pauses:
            self._paused_batches.append(messages)
            return
        self.received_messages += len(messages)
        start = 0
        while start < len(messages):
            port_id = messages[start][0]
            end = start + 1
            while end < len(messages) and messages[end][0] == port_id:
                end += 1
            mailbox = self._ports.get(port_id)
            if mailbox is not None and mailbox.put([m for _, m in messages[start:end]]):
                self._filled[id(mailbox)] = mailbox
            start = end
