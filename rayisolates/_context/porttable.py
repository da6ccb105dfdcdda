"""The ports an isolate has open: their ids, their mailboxes, and which keep it alive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .._transport.mailbox import Mailbox
from .._transport.wire import CONTROL_PORT

__all__ = ["PortTable"]


class PortTable:
    """The mailboxes of open receive ports, by port id; thread-safe.

    Args:
        changed: Called after a port closes or stops keeping the isolate
            alive (the isolate may then end).
    """

    def __init__(self, changed: Callable[[], None] = lambda: None) -> None:
        self._changed = changed
        self._lock = threading.Lock()
        self._ports: dict[int, Mailbox[Any]] = {}
        self._keep_alive: set[int] = set()
        self._next = CONTROL_PORT + 1

    def open(self, mailbox: Mailbox[Any], keep_alive: bool) -> int:
        """Register a port by its mailbox; returns the port's id."""
        with self._lock:
            port_id = self._next
            self._next += 1
            self._ports[port_id] = mailbox
            if keep_alive:
                self._keep_alive.add(port_id)
        return port_id

    def close(self, port_id: int) -> None:
        """Forget a closed port: later messages to it are dropped."""
        with self._lock:
            self._ports.pop(port_id, None)
            self._keep_alive.discard(port_id)
        self._changed()

    def set_keep_alive(self, port_id: int, keep: bool) -> None:
        """Whether the open port ``port_id`` keeps its isolate alive."""
        with self._lock:
            if not keep:
                self._keep_alive.discard(port_id)
            elif port_id in self._ports:
                self._keep_alive.add(port_id)
        self._changed()

    def get(self, port_id: int) -> Mailbox[Any] | None:
        """The mailbox of the open port ``port_id``, or ``None``."""
        return self._ports.get(port_id)

    @property
    def keeps_alive(self) -> bool:
        """Whether an open port keeps the isolate alive."""
        return bool(self._keep_alive)

    def queued(self) -> int:
        """Messages handed to the open ports and not yet taken by their consumers."""
        with self._lock:
            mailboxes = list(self._ports.values())
        return sum(len(mailbox) for mailbox in mailboxes)

    def __len__(self) -> int:
        return len(self._ports)
