"""Messages an isolate sends to its own ports: batched onto its own loop, in order."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from .wire import Item

__all__ = ["LocalChannel"]


class LocalChannel:
    """Gathers what an isolate sends itself and hands it to its receiver on its loop.

    Sends may come from any thread (the loop, the control thread, a user's
    thread); they are numbered as one sender's batches, so the receiver
    keeps their order even when a batch waits for the object store.

    Args:
        sender_id: The isolate's own id.
        loop: The isolate's loop.
        accept: Takes one batch ``(sender, seq, items)``, on ``loop``.
    """

    def __init__(
        self,
        sender_id: str,
        loop: asyncio.AbstractEventLoop,
        accept: Callable[[str, int, list[Item]], None],
    ) -> None:
        self._sender_id = sender_id
        self._loop = loop
        self._accept = accept
        self._lock = threading.Lock()
        self._pending: list[Item] = []
        self._scheduled = False
        self._seq = 0
        self.added = 0  # items added so far, under the lock

    def add(self, item: Item) -> None:
        """Queue ``item``; it is handed over on the loop's next turn."""
        with self._lock:
            self.added += 1
            self._pending.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: the isolate is gone
            self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
            seq = self._seq
            self._seq += 1
        self._accept(self._sender_id, seq, batch)
